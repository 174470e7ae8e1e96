//! The state of one mailbox, rebuilt by folding its events with [`MailboxState::apply`]
//! (the `evolve` of the architecture).
//!
//! # Link lifecycle (per CRM row in this mailbox)
//!
//! | state    | entered by                                   | left by                                   |
//! |----------|----------------------------------------------|-------------------------------------------|
//! | Creating | `create_intent` (either side)                | `link_created` (for this create) → Linked; permanent failure (`error_classified`) → gone; `delete_intent` → Deleting; `unlinked` → Unlinked |
//! | Linked   | `link_created`                               | `delete_intent` → Deleting; `unlinked` → Unlinked |
//! | Deleting | `delete_intent`                              | `intent_succeeded` → Deleted; permanent failure (`error_classified`) → Unlinked; a late `link_created` keeps it Deleting and names the item in the pending delete |
//! | Unlinked | `unlinked` (the item stays on the server)    | a new `create_intent`                     |
//! | Deleted  | the delete was carried out                   | a new `create_intent`                     |
//!
//! A link remembers the create it waits for: a create that completes after its row was
//! unlinked or re-created is an orphan, left on the server unlinked. A transient
//! failure (`error_classified` of an intent) below `transient_retry_limit` changes no link: the
//! intent stays pending, counts the failure and is not executed again before its retry time
//! (R11, R12); the failure that reaches the limit acts as a permanent one, and the intent given
//! up is kept in `failed_intents` (R79). "Permanent failure" in the table includes it.
//!
//! `synced` is what the server item holds: the CRM snapshot last written, or, for a row created
//! from a server item, a version-0 snapshot built from that item until the CRM's first snapshot
//! of the row arrives and is adopted.
//!
//! A link also remembers ledgersync's own last write to its server item (`Link::written`): the
//! `intent_succeeded` of a create or update written to the mail server stores the version tag
//! the connector reported for it, and an `item_seen` of the item with another tag forgets it.
//! `decide` uses it as the echo guard of R18: its own write seen again is no edit.
//!
//! An intent that writes to the CRM leaves as a CRM command ([`crate::crm`]); the pending
//! intent keeps what it asks (`PendingIntent::command`). The CRM's done result of a `track_*`
//! command whose row the CRM created under another id moves the link to that id, and every
//! done result remembers the row version the CRM wrote (`Link::crm_version`): the CRM's
//! snapshot of exactly that version is adopted as what the server item holds, never written
//! back (the echo guard of R18, CRM side).
//!
//! Decisions and outcomes move links; observations change facts (records, filters, access,
//! server items), except that adoption of a server-born row's first CRM snapshot.
//!
//! Attendee notifications (R82) are remembered per (row, version, kind) when decided, forgotten
//! again when their intent fails, and a cancellation forgets earlier invitations and updates of
//! that row (a meeting that comes back is new to its attendees).
//!
//! # Workload lifecycle (incoming, outgoing, ACT)
//!
//! Not run → (test) Success/Failure; `workload_enabled` → enabled; `workload_disabled` →
//! disabled with a reason; `error_classified` increments the consecutive-error count;
//! `listing_completed` resets it and records the last success.
//!
//! # The delete breaker (R25, `docs/decisions/0016-delete-breaker.md`)
//!
//! Closed → open by `breaker_tripped` (its workload is the one whose `deletions_listed` the
//! cycle reported); open → closed by `breaker_closed`. While open:
//! - an `item_gone` of an actively linked item puts its server id in [`DeleteBreaker::held`]
//!   (the link and the last seen item stay: nothing is deleted on either side), and an
//!   `item_seen` takes it out again (the item came back);
//! - the pending deletes and cancellations to the mail server are held
//!   ([`MailboxState::held_by_breaker`]): decided and kept, not carried out;
//! - a `breaker_closed` that is an approval forgets the held items as `item_gone` would
//!   have (their deletes are decided with it).
//!
//! # Item failures found by a listing (R12, R79)
//!
//! `item_failed` (a server item the connector could not read or understand) enters
//! [`MailboxState::failing_items`], or counts one more listing there. Every listing reports
//! again each item it still cannot understand, so `listings` is the number of consecutive
//! listings that failed the item (its retry count). The entry is left by `item_seen` (the item
//! is readable again) or `item_gone`, and by a `listing_completed` of its workload that did not
//! report it (a complete listing read every item); a partial or failed listing keeps it. An
//! item failure is never a deletion: it moves no link and forgets no server item.

use crate::crm::PendingCommand;
use crate::email::correlate::message_id_key;
use crate::event::{
    AccessReason, DisableReason, Event, ItemWrite, RemoteItem, ServerError, ServerType, Side,
    TestResult, Workload,
};
use crate::event::{CommandType, ErrorClass, ErrorClassified, IntentSucceeded, ItemFailed};
use crate::filter::{FilterSet, SyncFilter, default_templates};
use crate::ids::{EventId, MailboxId, OrgId, RecordId, RemoteId, UserId};
use crate::records::{Entity, Record};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The layout version of [`MailboxState::to_snapshot`]; bumped whenever the state's fields
/// change, so an old snapshot is refolded from the stream instead of misread.
pub const SNAPSHOT_VERSION: u8 = 12;

/// The key of an incoming email in [`MailboxState::emails_received`]: its folder and its
/// normalised Message-ID; `None` for a message without one.
pub fn email_key(e: &crate::event::EmailReceived) -> Option<String> {
    use crate::event::EmailFolder;
    if e.message_id.trim().is_empty() {
        return None;
    }
    let folder = match &e.folder {
        EmailFolder::Inbox => "inbox".to_string(),
        EmailFolder::Sent => "sent".to_string(),
        EmailFolder::Tracked(f) => format!("tracked:{f}"),
        EmailFolder::Other(f) => format!("other:{f}"),
    };
    Some(format!("{folder}\0{}", message_id_key(&e.message_id)))
}

impl MailboxState {
    /// Whether an incoming email decides nothing new: delivered again under the same server
    /// id, or read again in the same folder (its UIDVALIDITY changed), or already accepted
    /// from another folder.
    pub fn email_already_received(&self, e: &crate::event::EmailReceived) -> bool {
        self.emails_decided.contains(&e.remote)
            || email_key(e).is_some_and(|k| self.emails_received.contains(&k))
            || (!e.message_id.trim().is_empty()
                && self
                    .messages_accepted
                    .contains(&message_id_key(&e.message_id)))
    }
}

/// Identity and metadata of an event being applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// The event id.
    pub id: EventId,
    /// When it happened.
    pub at: Timestamp,
}

/// Where a link stands (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LinkStatus {
    /// A create intent is pending.
    Creating,
    /// Linked and kept in sync.
    Linked,
    /// A delete intent is pending.
    Deleting,
    /// No longer synced; the server item stays.
    Unlinked,
    /// Deleted on the other side.
    Deleted,
}

/// The link between one CRM row and its server item in this mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Server item, once known.
    pub remote: Option<RemoteId>,
    /// Status.
    pub status: LinkStatus,
    /// The CRM snapshot last written to the mail server (what the server item holds), shared
    /// with `MailboxState::records` when it is the latest.
    pub synced: Arc<Record>,
    /// The create intent this link waits for, while Creating (or Deleting before the create
    /// completed); a create that completes for another link is an orphan.
    pub create: Option<EventId>,
    /// The version tag (etag) of the server item as ledgersync itself last wrote it: set by the
    /// `intent_succeeded` of its create or update, forgotten when a listing shows another
    /// version. A sighting with this tag is ledgersync's own write seen again, never an edit
    /// (the echo guard of R18).
    pub written: Option<String>,
    /// The CRM row version a CRM command of ledgersync's wrote (`intent_succeeded` with a
    /// `crm` part): the CRM's `record_upserted` of exactly this version is that write coming
    /// back, adopted as what the server item holds and never written back (the echo guard of
    /// R18 on the CRM side). Forgotten once adopted.
    pub crm_version: Option<u64>,
}

impl Link {
    /// Creating or Linked: the row counts as synced to this mailbox.
    pub fn is_active(&self) -> bool {
        matches!(self.status, LinkStatus::Creating | LinkStatus::Linked)
    }
}

/// A pending intent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingIntent {
    /// The event type name of the intent (`create_intent`, ...).
    pub kind: IntentKind,
    /// The CRM row.
    pub record: RecordId,
    /// The server item, when known.
    pub remote: Option<RemoteId>,
    /// True when the intent writes to the CRM.
    pub to_crm: bool,
    /// The attendee notification it carries, (row version, kind), if any (R82).
    pub notifies: Option<(u64, IntentKind)>,
    /// Transient failures so far (the retry count of R12, R79): the next failure is attempt
    /// `failures + 1`, and the one that reaches `transient_retry_limit` gives the intent up.
    pub failures: u32,
    /// The last failure's error, if it failed.
    pub last_error: Option<ServerError>,
    /// When the last failure was recorded.
    pub last_failed: Option<Timestamp>,
    /// Not executed again before this time: the recorded time of its last failure plus the
    /// retry interval the decision used, or the server's honoured Retry-After when later
    /// (R11, R12).
    pub retry_at: Option<Timestamp>,
    /// For an intent that writes to the CRM: the CRM command it leaves as (type, table, the
    /// mail-side fields as decided), see [`crate::crm`].
    pub command: Option<PendingCommand>,
}

impl PendingIntent {
    /// Whether the intent may be executed at `now`: never failed, or its retry time has come.
    pub fn due(&self, now: Timestamp) -> bool {
        self.retry_at.is_none_or(|at| at <= now)
    }
}

/// An intent given up (R12, R79): a permanent error, or a transient one that reached the
/// retry limit. What a mailbox owner needs to see about an item that did not sync; forgotten
/// when a later intent of the same row succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedIntent {
    /// The kind of change.
    pub kind: IntentKind,
    /// The CRM row.
    pub record: RecordId,
    /// The server item, when known.
    pub remote: Option<RemoteId>,
    /// True when the intent wrote to the CRM.
    pub to_crm: bool,
    /// The workload.
    pub workload: Workload,
    /// Permanent, or transient given up at the limit.
    pub class: ErrorClass,
    /// The last error.
    pub error: ServerError,
    /// When it was given up.
    pub at: Timestamp,
    /// Attempts made, the failing one included.
    pub attempts: u32,
}

/// Kinds of intents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IntentKind {
    /// Create.
    Create,
    /// Update.
    Update,
    /// Delete.
    Delete,
    /// Send a cancellation.
    Cancel,
}

/// Health and status of one workload (R80).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadState {
    /// Last Test & Enable result.
    pub test: Option<TestResult>,
    /// Enabled?
    pub enabled: bool,
    /// Why it is disabled, if it was.
    pub disabled_reason: Option<DisableReason>,
    /// Consecutive failed cycles.
    pub consecutive_errors: u32,
    /// Last error.
    pub last_error: Option<ServerError>,
    /// Last successful cycle.
    pub last_success: Option<Timestamp>,
    /// Next scheduled run.
    pub next_run: Option<Timestamp>,
    /// Consecutive cycles that found nothing (they stretch the cadence, R7, R9).
    pub quiet_cycles: u32,
    /// Items the last completed cycle processed (R80).
    pub items_processed_last_cycle: u32,
    /// Items that failed during the last completed cycle (R80).
    pub items_failed_last_cycle: u32,
    /// Items that failed since the last completed cycle.
    pub items_failed_this_cycle: u32,
}

/// A server item the listings of a workload could not read (R12, R79); see the module doc.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingItem {
    /// The workload whose listings fail it.
    pub workload: Workload,
    /// The table it maps to, when the connector could tell.
    pub entity: Option<Entity>,
    /// The last error.
    pub error: ServerError,
    /// When the first of the consecutive failures was recorded.
    pub since: Timestamp,
    /// When the last failure was recorded.
    pub last: Timestamp,
    /// Consecutive listings that failed it (the retry count, R79).
    pub listings: u32,
    /// Reported by the listing under way (cleared by its terminal event).
    pub in_current_listing: bool,
}

/// The delete breaker of a mailbox while it is open (R25; see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteBreaker {
    /// The workload whose cycle tripped it.
    pub workload: Workload,
    /// The deletes that cycle would have made.
    pub deletes: u32,
    /// When it tripped.
    pub since: Timestamp,
    /// Why it tripped (the reason of its `breaker_tripped`).
    pub reason: String,
    /// Server items reported gone while it is open, whose deletes wait for an approval.
    pub held: BTreeSet<RemoteId>,
}

/// Everything one mailbox knows, rebuilt from its stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxState {
    /// Mailbox id (set by `mailbox_registered`).
    pub id: Option<MailboxId>,
    /// Organization.
    pub org: Option<OrgId>,
    /// Address.
    pub address: String,
    /// Server type of its profile.
    pub server_type: Option<ServerType>,
    /// The mapped user.
    pub owner: Option<UserId>,
    /// Address approved.
    pub approved: bool,
    /// The organization that owns ACT sync on the server, as last tested.
    pub act_org_marker: Option<OrgId>,
    /// Workloads: incoming, outgoing, ACT.
    pub workloads: [WorkloadState; 3],
    /// The owner's sync filters.
    #[serde(with = "filter_set_serde")]
    pub filters: FilterSet,
    /// Rows the owner cannot read, and why (R20).
    pub denied: BTreeMap<RecordId, AccessReason>,
    /// Latest snapshot of every CRM row routed here.
    pub records: BTreeMap<RecordId, Arc<Record>>,
    /// Rows deleted in the CRM.
    pub deleted: BTreeSet<RecordId>,
    /// Links by CRM row.
    pub links: BTreeMap<RecordId, Link>,
    /// CRM row by server item.
    pub by_remote: BTreeMap<RemoteId, RecordId>,
    /// Last seen state of server items.
    pub remote_items: BTreeMap<RemoteId, RemoteItem>,
    /// Intents without an outcome yet.
    pub intents: BTreeMap<EventId, PendingIntent>,
    /// Attendee notifications already decided: (row, version, kind) (R82).
    pub notified: BTreeSet<(RecordId, u64, IntentKind)>,
    /// Server items the listings could not read, by server id (R12, R79).
    pub failing_items: BTreeMap<RemoteId, FailingItem>,
    /// Creates withdrawn before their outcome (the row left the union while Creating, R27):
    /// one that was already being carried out and still succeeds made an item to delete.
    pub withdrawn: BTreeMap<EventId, PendingIntent>,
    /// Intents given up, by intent id (R12, R79): see [`FailedIntent`].
    pub failed_intents: BTreeMap<EventId, FailedIntent>,
    /// The delete breaker, while it is open (R25).
    pub breaker: Option<DeleteBreaker>,
    /// The workload whose listing under way reported `deletions_listed` (until its terminal
    /// event): the workload a `breaker_tripped` of that cycle opens the breaker for.
    pub deletions_listed: Option<Workload>,
    /// Incoming emails already decided, by server id: one delivered again decides nothing.
    pub emails_decided: BTreeSet<RemoteId>,
    /// Incoming emails already received, by folder and Message-ID ([`email_key`]): the same
    /// message read again in the same folder under another server id (the folder's
    /// UIDVALIDITY changed) decides nothing.
    pub emails_received: BTreeSet<String>,
    /// The Message-IDs of the emails accepted ([`message_id_key`]): a message accepted once
    /// is never tracked again by this mailbox, from whichever folder it is read.
    pub messages_accepted: BTreeSet<String>,
    /// The incoming emails whose last `email_received` carried the tracking keyword (tracked
    /// by hand, R56): one observed again without it is untracked (R73).
    pub keyword_tracked: BTreeSet<RemoteId>,
    /// The incoming email being decided: its headers from its `email_received`, completed by
    /// its `email_accepted`, until the `track_email` intent after it takes them as its command
    /// (or an `email_rejected` drops them).
    pub incoming_email: Option<IncomingEmail>,
}

/// An incoming email between its `email_received` and the `track_email` intent decided for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingEmail {
    /// Its server item.
    pub remote: RemoteId,
    /// Whether its `email_accepted` has been applied (the decision part of `command` is set).
    pub accepted: bool,
    /// The command it leaves as.
    pub command: crate::crm::EmailCommand,
}

mod filter_set_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(set: &FilterSet, s: S) -> Result<S::Ok, S::Error> {
        let v: Vec<&SyncFilter> = set.filters().collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FilterSet, D::Error> {
        let v = Vec::<SyncFilter>::deserialize(d)?;
        FilterSet::compile(&v).map_err(serde::de::Error::custom)
    }
}

impl MailboxState {
    /// The workload's state.
    pub fn workload(&self, w: Workload) -> &WorkloadState {
        &self.workloads[w.index()]
    }

    fn workload_mut(&mut self, w: Workload) -> &mut WorkloadState {
        &mut self.workloads[w.index()]
    }

    /// One more listing failed `p.remote` (R12, R79): counted once per listing, and for the
    /// cycle's health (R80).
    fn item_failed(&mut self, at: Timestamp, p: &ItemFailed) {
        let entry = self
            .failing_items
            .entry(p.remote.clone())
            .or_insert_with(|| FailingItem {
                workload: p.workload,
                entity: p.entity,
                error: p.error.clone(),
                since: at,
                last: at,
                listings: 0,
                in_current_listing: false,
            });
        let first_in_listing = !entry.in_current_listing;
        entry.workload = p.workload;
        entry.entity = p.entity.or(entry.entity);
        entry.error = p.error.clone();
        entry.last = at;
        if first_in_listing {
            entry.listings += 1;
            entry.in_current_listing = true;
            self.workload_mut(p.workload).items_failed_this_cycle += 1;
        }
    }

    /// The listing of `w` ended: the next one counts its failures afresh.
    fn end_listing(&mut self, w: Workload) {
        for f in self.failing_items.values_mut() {
            if f.workload == w {
                f.in_current_listing = false;
            }
        }
    }

    /// Whether this mailbox has already received `record`'s version of the row, or a newer
    /// one (R82: re-delivered and stale snapshots decide nothing and change nothing).
    pub fn already_seen(&self, record: &Record) -> bool {
        self.records
            .get(&record.id)
            .is_some_and(|known| known.version >= record.version)
    }

    /// The active link of a row, if any.
    pub fn active_link(&self, id: &RecordId) -> Option<&Link> {
        self.links.get(id).filter(|l| l.is_active())
    }

    /// Whether the server item `remote` is linked to a row by an active link.
    pub fn actively_linked(&self, remote: &RemoteId) -> bool {
        self.by_remote
            .get(remote)
            .is_some_and(|r| self.active_link(r).is_some())
    }

    /// Server items with an active link: the linked items the delete breaker weighs a cycle's
    /// deletes against (R25).
    pub fn linked_items(&self) -> usize {
        self.links
            .values()
            .filter(|l| l.is_active() && l.remote.is_some())
            .count()
    }

    /// The workload `intent` belongs to, whose connector carries it out: a create on the mail
    /// server of an email row is its send (outgoing email, R75), and the CRM's
    /// `mark_email_sent` follows it (R76); a `track_email` command is the incoming email's
    /// (R52); every other intent is ACT's.
    pub fn intent_workload(&self, intent: &PendingIntent) -> Workload {
        match intent.command.as_ref().map(|c| c.command) {
            Some(CommandType::TrackEmail) => return Workload::Incoming,
            Some(CommandType::MarkEmailSent) => return Workload::Outgoing,
            Some(_) => return Workload::Act,
            None => {}
        }
        let email = self
            .records
            .get(&intent.record)
            .is_some_and(|r| r.entity() == Entity::Email);
        if !intent.to_crm && intent.kind == IntentKind::Create && email {
            Workload::Outgoing
        } else {
            Workload::Act
        }
    }

    /// Whether `intent` is held by the open delete breaker (R25): a delete or a cancellation to
    /// the mail server is decided and kept, but not carried out while the breaker is open.
    pub fn held_by_breaker(&self, intent: &PendingIntent) -> bool {
        self.breaker.is_some()
            && !intent.to_crm
            && matches!(intent.kind, IntentKind::Delete | IntentKind::Cancel)
    }

    /// Applies one event: the `evolve` step. Never fails: an event that does not fit (for
    /// example an outcome for an unknown intent) changes nothing.
    pub fn apply(&mut self, meta: EventMeta, event: &Event) {
        match event {
            Event::MailboxRegistered(p) => {
                self.id = Some(p.mailbox.clone());
                self.org = Some(p.org.clone());
                self.address = p.address.clone();
                self.server_type = Some(p.server_type);
            }
            Event::MailboxMapped(_) | Event::DisableRequested(_) | Event::DeletesApproved(_) => {}
            Event::AddressApproved(p) => self.approved = p.approved,
            Event::MailboxTested(p) => {
                self.act_org_marker = p.act_org_marker.clone();
                for (w, r) in [
                    (Workload::Incoming, p.incoming),
                    (Workload::Outgoing, p.outgoing),
                    (Workload::Act, p.act),
                ] {
                    if r != TestResult::NotRun {
                        self.workload_mut(w).test = Some(r);
                    }
                }
            }
            Event::RecordUpserted(p) => self.upserted(p.record.clone()),
            Event::OwnerChanged(p) => self.owner_changed(p.record.clone()),
            Event::RecordDeleted(p) => {
                self.deleted.insert(p.id.clone());
            }
            Event::AccessLost(p) => {
                if self.owner.as_ref() == Some(&p.user) {
                    for r in &p.records {
                        self.denied.insert(r.clone(), p.reason);
                    }
                }
            }
            Event::AccessRegained(p) => {
                if self.owner.as_ref() == Some(&p.user) {
                    for r in &p.records {
                        self.denied.remove(r);
                    }
                }
            }
            Event::FilterChanged(p) => {
                if self.owner.as_ref() == Some(&p.user) {
                    // Filters are validated at ingestion; an invalid set leaves the old one.
                    let _ = self.filters.replace_entity(p.entity, &p.filters);
                }
            }
            Event::ItemSeen(p) => self.item_seen(p.item.clone()),
            Event::ItemGone(p) => {
                self.failing_items.remove(&p.remote);
                let linked = self.actively_linked(&p.remote);
                match &mut self.breaker {
                    // Held: the link and the last seen item stay until an approval.
                    Some(b) if linked => {
                        b.held.insert(p.remote.clone());
                    }
                    _ => {
                        self.remote_items.remove(&p.remote);
                    }
                }
            }
            Event::DeletionsListed(p) => self.deletions_listed = Some(p.workload),
            Event::ItemFailed(p) => self.item_failed(meta.at, p),
            Event::ListingCompleted(p) => {
                // A complete listing read every item: one it did not fail is no longer failing.
                self.failing_items
                    .retain(|_, f| f.workload != p.workload || f.in_current_listing);
                self.end_listing(p.workload);
                self.deletions_listed = None;
                let w = self.workload_mut(p.workload);
                w.consecutive_errors = 0;
                w.last_success = Some(meta.at);
                w.quiet_cycles = if p.items == 0 { w.quiet_cycles + 1 } else { 0 };
                w.items_processed_last_cycle = p.items;
                w.items_failed_last_cycle = std::mem::take(&mut w.items_failed_this_cycle);
            }
            Event::PushReceived(_) => {}
            Event::CycleScheduled(p) => self.workload_mut(p.workload).next_run = Some(p.at),
            Event::ListingFailed(p) => {
                self.end_listing(p.workload);
                self.deletions_listed = None;
                self.workload_mut(p.workload).last_error = Some(p.error.clone())
            }
            Event::ListingPartial(p) => {
                self.end_listing(p.workload);
                self.deletions_listed = None;
            }
            Event::CursorReset(_) => {}
            Event::EmailReceived(p) => {
                let already = self.email_already_received(p);
                if let Some(key) = email_key(p) {
                    self.emails_received.insert(key);
                }
                if p.manual.is_some() {
                    self.keyword_tracked.insert(p.remote.clone());
                } else {
                    self.keyword_tracked.remove(&p.remote);
                }
                if !already {
                    self.incoming_email = Some(IncomingEmail {
                        remote: p.remote.clone(),
                        accepted: false,
                        command: crate::crm::EmailCommand {
                            message_id: crate::email::correlate::message_id_key(&p.message_id),
                            subject: p.subject.clone(),
                            from: p.from.clone(),
                            to: p.to.clone(),
                            cc: p.cc.clone(),
                            received: p.received,
                            accepting: RecordId::new(""),
                            receiving_mailbox: self
                                .id
                                .clone()
                                .unwrap_or_else(|| MailboxId::new("?")),
                            regarding: None,
                            correlated: None,
                            correlation: None,
                            parent: false,
                            sender: None,
                            recipients: Vec::new(),
                            create: None,
                            owner: None,
                        },
                    });
                }
            }
            Event::IntentSucceeded(p) => {
                self.withdrawn.remove(&p.intent);
                if let Some(done) = &p.crm {
                    self.crm_done(p.intent, done);
                }
                self.intent_succeeded(p);
            }
            // What a failure does is decided (`error_classified`, R12) and applied there.
            Event::IntentFailed(p) => {
                self.withdrawn.remove(&p.intent);
            }
            Event::CreateIntent(p) => self.create_intent(
                meta.id,
                p.record.clone(),
                p.remote.clone(),
                p.target,
                &p.item,
            ),
            Event::UpdateIntent(p) => self.update_intent(
                meta.id,
                p.record.clone(),
                p.remote.clone(),
                p.target,
                &p.item,
            ),
            Event::DeleteIntent(p) => {
                self.delete_intent(meta.id, p.record.clone(), p.remote.clone(), p.target)
            }
            Event::CancelIntent(p) => {
                self.cancel_intent(meta.id, p.record.clone(), p.remote.clone(), p.version)
            }
            Event::LinkCreated(p) => self.link_created(p.record.clone(), p.remote.clone()),
            Event::Unlinked(p) => {
                if let Some(link) = self.links.get_mut(&p.record) {
                    if link.status == LinkStatus::Creating {
                        // Withdrawn before it was carried out: the pending create and the
                        // updates behind it are not carried out, and what they would have told
                        // attendees was never told (R82 may decide it again).
                        let withdrawn: Vec<EventId> = self
                            .intents
                            .iter()
                            .filter(|(_, i)| {
                                i.record == p.record
                                    && !i.to_crm
                                    && matches!(i.kind, IntentKind::Create | IntentKind::Update)
                            })
                            .map(|(id, _)| *id)
                            .collect();
                        for id in withdrawn {
                            if let Some(i) = self.intents.remove(&id) {
                                if let Some((version, kind)) = i.notifies {
                                    self.notified.remove(&(i.record.clone(), version, kind));
                                }
                                if i.kind == IntentKind::Create {
                                    self.withdrawn.insert(id, i);
                                }
                            }
                        }
                    }
                    link.status = LinkStatus::Unlinked;
                    link.create = None;
                    if let Some(r) = link.remote.take() {
                        self.by_remote.remove(&r);
                    }
                }
            }
            Event::ItemUntracked(p) => {
                if let Some(item) = self.remote_items.get_mut(&p.remote) {
                    item.tracked = None;
                }
            }
            // An item's failure: counted for the cycle (R80). A transient one leaves the intent
            // pending, retried with its idempotency key in a later cycle (R12); a permanent one
            // closes it.
            Event::ErrorClassified(
                p @ ErrorClassified {
                    intent: Some(id), ..
                },
            ) => {
                self.workload_mut(p.workload).items_failed_this_cycle += 1;
                self.intent_error(meta.at, *id, p);
            }
            Event::ErrorClassified(p) => {
                let w = self.workload_mut(p.workload);
                w.consecutive_errors = p.attempt;
                w.last_error = Some(p.error.clone());
            }
            Event::RetryScheduled(p) => self.workload_mut(p.workload).next_run = Some(p.at),
            Event::WorkloadEnabled(p) => {
                let w = self.workload_mut(p.workload);
                w.enabled = true;
                w.disabled_reason = None;
                w.consecutive_errors = 0;
            }
            Event::WorkloadDisabled(p) => {
                let w = self.workload_mut(p.workload);
                w.enabled = false;
                w.disabled_reason = Some(p.reason.clone());
                w.next_run = None;
            }
            Event::MappingEnded(_) => {
                self.owner = None;
                self.denied.clear();
                for link in self.links.values_mut() {
                    if link.is_active() {
                        link.status = LinkStatus::Unlinked;
                    }
                }
                self.by_remote.clear();
            }
            Event::MappingStarted(p) => {
                self.owner = Some(p.user.clone());
                self.filters = FilterSet::compile(&default_templates())
                    .expect("the default templates are valid filters");
            }
            Event::OrganizationClaimed(p) => self.act_org_marker = Some(p.org.clone()),
            Event::SettingChanged(_)
            | Event::UserRegistered(_)
            | Event::ProfileRegistered(_)
            | Event::ProfileAlertingSet(_)
            | Event::MailboxFailureNoted(_)
            | Event::ItemTracked(_)
            | Event::LogicalDelete(_)
            | Event::NoAction(_)
            | Event::ConflictResolved(_)
            | Event::AlertRaised(_) => {}
            Event::EmailAccepted(p) => {
                self.emails_decided.insert(p.remote.clone());
                if !p.message_id.trim().is_empty() {
                    self.messages_accepted.insert(message_id_key(&p.message_id));
                }
                if let Some(incoming) = &mut self.incoming_email
                    && incoming.remote == p.remote
                {
                    let c = &mut incoming.command;
                    incoming.accepted = true;
                    if !p.message_id.is_empty() {
                        c.message_id = p.message_id.clone();
                    }
                    c.accepting = p.accepting.clone();
                    c.receiving_mailbox = p.receiving_mailbox.clone();
                    c.regarding = p.regarding.clone();
                    c.correlated = p.correlated.clone();
                    c.correlation = p.correlation;
                    c.parent = p.parent;
                    c.sender = p.sender.clone();
                    c.recipients = p.recipients.clone();
                    c.create = p.create;
                    c.owner = p.owner.clone();
                }
            }
            Event::EmailRejected(p) => {
                self.emails_decided.insert(p.remote.clone());
                if self
                    .incoming_email
                    .as_ref()
                    .is_some_and(|i| i.remote == p.remote)
                {
                    self.incoming_email = None;
                }
            }
            Event::BreakerTripped(p) => {
                self.breaker = Some(DeleteBreaker {
                    workload: self.deletions_listed.unwrap_or(Workload::Act),
                    deletes: p.deletes,
                    since: meta.at,
                    reason: p.basis.reason.clone(),
                    held: BTreeSet::new(),
                });
            }
            Event::BreakerClosed(p) => {
                if let Some(b) = self.breaker.take()
                    && p.approved
                {
                    // Approved: the held items are gone, as their `item_gone` said.
                    for r in b.held {
                        self.remote_items.remove(&r);
                    }
                }
            }
        }
    }

    /// [`apply`](Self::apply) for an event the caller has no further use for (a replay, the
    /// recovery of a mailbox): the snapshots it carries move into the state instead of being
    /// copied. The resulting state is the same as with `apply`.
    pub fn apply_owned(&mut self, meta: EventMeta, event: Event) {
        match event {
            Event::RecordUpserted(p) => self.upserted(p.record),
            Event::OwnerChanged(p) => self.owner_changed(p.record),
            Event::ItemSeen(p) => self.item_seen(p.item),
            Event::CreateIntent(p) => {
                self.create_intent(meta.id, p.record, p.remote, p.target, &p.item)
            }
            Event::UpdateIntent(p) => {
                self.update_intent(meta.id, p.record, p.remote, p.target, &p.item)
            }
            Event::DeleteIntent(p) => self.delete_intent(meta.id, p.record, p.remote, p.target),
            Event::CancelIntent(p) => self.cancel_intent(meta.id, p.record, p.remote, p.version),
            Event::LinkCreated(p) => self.link_created(p.record, p.remote),
            other => self.apply(meta, &other),
        }
    }

    /// `record_upserted`: the latest snapshot of the row.
    fn upserted(&mut self, record: Record) {
        if self.already_seen(&record) {
            return;
        }
        self.deleted.remove(&record.id);
        let rec = Arc::new(record);
        // The first CRM snapshot of a row created from a server item is adopted as what the
        // server holds (`decide` writes nothing back for it).
        if let Some(link) = self.links.get_mut(&rec.id)
            && link.is_active()
            && link.synced.version == 0
        {
            link.synced = Arc::clone(&rec);
        }
        // The version a CRM command of ledgersync's wrote comes back: it holds what the server
        // item holds (the echo guard of R18, CRM side; `decide` writes nothing back for it).
        // A later version makes the remembered one history.
        if let Some(link) = self.links.get_mut(&rec.id)
            && let Some(written) = link.crm_version
            && rec.version >= written
        {
            if written == rec.version && link.is_active() {
                link.synced = Arc::clone(&rec);
            }
            link.crm_version = None;
        }
        self.records.insert(rec.id.clone(), rec);
    }

    /// `owner_changed`: the snapshot after the reassignment.
    fn owner_changed(&mut self, record: Record) {
        if self.already_seen(&record) {
            return;
        }
        self.records.insert(record.id.clone(), Arc::new(record));
    }

    /// `item_seen`: the server item is readable again, and this is its last seen state. A
    /// version other than the one ledgersync wrote means the item moved on from its write.
    fn item_seen(&mut self, item: RemoteItem) {
        if let Some(b) = &mut self.breaker {
            b.held.remove(&item.remote);
        }
        if let Some(record) = self.by_remote.get(&item.remote)
            && let Some(link) = self.links.get_mut(record)
            && link.written.as_ref().is_some_and(|w| *w != item.etag)
        {
            link.written = None;
        }
        self.failing_items.remove(&item.remote);
        self.remote_items.insert(item.remote.clone(), item);
    }

    /// `intent_succeeded`: the intent is closed. A carried-out delete makes the link Deleted; a
    /// create or update written to the mail server remembers the version tag it wrote, so that
    /// its next sighting is recognised as ledgersync's own write (the echo guard of R18).
    fn intent_succeeded(&mut self, p: &IntentSucceeded) {
        let Some(intent) = self.intents.remove(&p.intent) else {
            return;
        };
        // The row syncs again: its earlier given-up intents are history.
        self.failed_intents.retain(|_, f| f.record != intent.record);
        let Some(link) = self.links.get_mut(&intent.record) else {
            return;
        };
        match intent.kind {
            IntentKind::Delete if link.status == LinkStatus::Deleting => {
                link.status = LinkStatus::Deleted;
                link.create = None;
                if let Some(r) = link.remote.take() {
                    self.by_remote.remove(&r);
                }
            }
            // A tag the connector could not read back leaves none: the item no longer holds
            // the version remembered before this write.
            IntentKind::Create if !intent.to_crm && link.create == Some(p.intent) => {
                link.written = p.etag.clone();
            }
            IntentKind::Update if !intent.to_crm && link.is_active() => {
                link.written = p.etag.clone();
            }
            _ => {}
        }
    }

    /// `create_intent` `id`: the intent is pending and the row's link is Creating.
    fn create_intent(
        &mut self,
        id: EventId,
        record: RecordId,
        remote: Option<RemoteId>,
        target: Side,
        item: &ItemWrite,
    ) {
        let to_crm = target == Side::Crm;
        let notifies = item
            .notify_attendees
            .then_some((item.version, IntentKind::Create));
        let synced = if to_crm {
            // A row created from a server item: what the server holds is that item.
            remote
                .as_ref()
                .and_then(|r| self.remote_items.get(r))
                .map(|item| Arc::new(provisional_record(&record, self.owner.as_ref(), item)))
        } else {
            self.records.get(&record).cloned()
        };
        if let Some(synced) = synced {
            self.links.insert(
                record.clone(),
                Link {
                    remote: remote.clone(),
                    status: LinkStatus::Creating,
                    synced,
                    create: Some(id),
                    written: None,
                    crm_version: None,
                },
            );
            if let Some(r) = &remote {
                self.by_remote.insert(r.clone(), record.clone());
            }
        }
        // The accepted email this intent tracks, if it is one (R52): its command carries it.
        let email = match (&self.incoming_email, &remote) {
            (Some(i), Some(r)) if to_crm && i.accepted && &i.remote == r => {
                self.incoming_email.take().map(|i| i.command)
            }
            _ => None,
        };
        let command = to_crm.then(|| {
            let mut facts =
                self.command_facts(IntentKind::Create, &record, remote.as_ref(), Some(item));
            if let Some(email) = email {
                facts.command = CommandType::TrackEmail;
                facts.entity = Entity::Email;
                facts.title = email.subject.clone();
                facts.fields = None;
                facts.email = Some(email);
            }
            facts
        });
        self.pending(id, IntentKind::Create, record, remote, notifies, command);
    }

    /// `update_intent` `id`: pending; a write to the server makes the latest snapshot the
    /// synced one.
    fn update_intent(
        &mut self,
        id: EventId,
        record: RecordId,
        remote: Option<RemoteId>,
        target: Side,
        item: &ItemWrite,
    ) {
        let to_crm = target == Side::Crm;
        let notifies = item
            .notify_attendees
            .then_some((item.version, IntentKind::Update));
        if !to_crm
            && let (Some(rec), Some(link)) =
                (self.records.get(&record), self.links.get_mut(&record))
        {
            link.synced = Arc::clone(rec);
        }
        let command = to_crm
            .then(|| self.command_facts(IntentKind::Update, &record, remote.as_ref(), Some(item)));
        self.pending(id, IntentKind::Update, record, remote, notifies, command);
    }

    /// `delete_intent` `id`: pending, and the row's link is Deleting.
    fn delete_intent(
        &mut self,
        id: EventId,
        record: RecordId,
        remote: Option<RemoteId>,
        target: Side,
    ) {
        if let Some(link) = self.links.get_mut(&record) {
            link.status = LinkStatus::Deleting;
        }
        let command = (target == Side::Crm)
            .then(|| self.command_facts(IntentKind::Delete, &record, remote.as_ref(), None));
        self.pending(id, IntentKind::Delete, record, remote, None, command);
    }

    /// `cancel_intent` `id` for row version `version`: pending, and the row's earlier
    /// invitations and updates are forgotten.
    fn cancel_intent(
        &mut self,
        id: EventId,
        record: RecordId,
        remote: Option<RemoteId>,
        version: u64,
    ) {
        // A cancelled meeting that comes back is a new meeting to its attendees.
        let earlier: Vec<_> = self
            .notified
            .range(
                (record.clone(), 0, IntentKind::Create)
                    ..=(record.clone(), u64::MAX, IntentKind::Cancel),
            )
            .filter(|(_, _, kind)| *kind != IntentKind::Cancel)
            .cloned()
            .collect();
        for key in earlier {
            self.notified.remove(&key);
        }
        let notifies = Some((version, IntentKind::Cancel));
        self.pending(id, IntentKind::Cancel, record, remote, notifies, None);
    }

    /// `link_created`: the row's link knows its server item.
    fn link_created(&mut self, record: RecordId, remote: RemoteId) {
        let Some(link) = self.links.get_mut(&record) else {
            return;
        };
        link.remote = Some(remote.clone());
        link.create = None;
        if link.status == LinkStatus::Deleting {
            // A delete decided while the create was pending now knows its item.
            for intent in self.intents.values_mut() {
                if intent.record == record
                    && matches!(intent.kind, IntentKind::Delete | IntentKind::Cancel)
                    && !intent.to_crm
                    && intent.remote.is_none()
                {
                    intent.remote = Some(remote.clone());
                }
            }
        } else {
            link.status = LinkStatus::Linked;
        }
        self.by_remote.insert(remote, record);
    }

    /// `error_classified` of intent `id` (R12): a transient failure below the limit counts one
    /// more attempt and sets the time before which the intent is not executed again (the
    /// recorded time plus the retry interval the decision used, or the honoured Retry-After);
    /// a permanent failure, or the transient one that reaches the limit, gives it up.
    fn intent_error(&mut self, at: Timestamp, id: EventId, p: &ErrorClassified) {
        let Some(intent) = self.intents.get_mut(&id) else {
            return;
        };
        let attempts = p.attempt.max(intent.failures + 1);
        // R77: a send refused for quota or throttling stays pending, however often.
        let throttled_send = p.workload == Workload::Outgoing
            && !intent.to_crm
            && crate::email::outgoing::throttled(&p.error);
        if p.class == ErrorClass::Transient && (attempts < p.limit || throttled_send) {
            let interval = retry_interval(&p.basis);
            intent.failures = attempts;
            intent.last_error = Some(p.error.clone());
            intent.last_failed = Some(at);
            intent.retry_at = Some(crate::policy::retry_after::next_retry(
                at, interval, &p.error,
            ));
            return;
        }
        if let Some(intent) = self.close_failed_intent(id) {
            self.failed_intents.insert(
                id,
                FailedIntent {
                    kind: intent.kind,
                    record: intent.record,
                    remote: intent.remote,
                    to_crm: intent.to_crm,
                    workload: p.workload,
                    class: p.class,
                    error: p.error.clone(),
                    at,
                    attempts,
                },
            );
        }
    }

    /// A failed intent given up is closed: a delete leaves the item unlinked where it is, a
    /// create leaves the row unlinked, and an undelivered notification may be decided again.
    fn close_failed_intent(&mut self, id: EventId) -> Option<PendingIntent> {
        let intent = self.intents.remove(&id)?;
        // Nothing reached the attendees: the notification may be decided again (R82).
        if let Some((version, kind)) = intent.notifies {
            self.notified
                .remove(&(intent.record.clone(), version, kind));
        }
        if let Some(link) = self.links.get_mut(&intent.record) {
            match (intent.kind, link.status) {
                (IntentKind::Delete, LinkStatus::Deleting) => {
                    link.status = LinkStatus::Unlinked;
                    link.create = None;
                    if let Some(r) = link.remote.take() {
                        self.by_remote.remove(&r);
                    }
                }
                (IntentKind::Create, LinkStatus::Creating) if link.create == Some(id) => {
                    if let Some(r) = &link.remote {
                        self.by_remote.remove(r);
                    }
                    self.links.remove(&intent.record);
                }
                _ => {}
            }
        }
        Some(intent)
    }

    fn pending(
        &mut self,
        id: EventId,
        kind: IntentKind,
        record: RecordId,
        remote: Option<RemoteId>,
        notifies: Option<(u64, IntentKind)>,
        command: Option<PendingCommand>,
    ) {
        if let Some((version, kind)) = notifies {
            if kind != IntentKind::Cancel {
                // Invited again: a later cancellation is news to the attendees.
                let cancels: Vec<_> = self
                    .notified
                    .range(
                        (record.clone(), 0, IntentKind::Cancel)
                            ..=(record.clone(), u64::MAX, IntentKind::Cancel),
                    )
                    .filter(|(_, _, k)| *k == IntentKind::Cancel)
                    .cloned()
                    .collect();
                for key in cancels {
                    self.notified.remove(&key);
                }
            }
            self.notified.insert((record.clone(), version, kind));
        }
        self.intents.insert(
            id,
            PendingIntent {
                kind,
                record,
                remote,
                to_crm: command.is_some(),
                notifies,
                failures: 0,
                last_error: None,
                last_failed: None,
                retry_at: None,
                command,
            },
        );
    }

    /// Encodes the state for a snapshot: one version byte ([`SNAPSHOT_VERSION`]), then bincode 2.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_VERSION];
        bincode::serde::encode_into_std_write(self, &mut out, crate::envelope::config())
            .expect("encoding a state to a Vec cannot fail");
        out
    }

    /// Decodes a snapshot written by [`MailboxState::to_snapshot`]. A snapshot of another
    /// version is an error: the caller rebuilds the state from the stream instead.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, crate::envelope::DecodeError> {
        use crate::envelope::DecodeError;
        match bytes.split_first() {
            Some((&SNAPSHOT_VERSION, body)) => {
                let (state, used) =
                    bincode::serde::decode_from_slice(body, crate::envelope::config())
                        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
                if used != body.len() {
                    return Err(DecodeError::Malformed(format!(
                        "{} trailing bytes after the snapshot",
                        body.len() - used
                    )));
                }
                Ok(state)
            }
            Some((&v, _)) => Err(DecodeError::Malformed(format!(
                "snapshot version {v}, this build reads version {SNAPSHOT_VERSION}"
            ))),
            None => Err(DecodeError::Empty),
        }
    }
}

/// The retry interval an item's `error_classified` was decided with (its basis names
/// `transient_retry_interval_minutes`); the default for a decision that did not name it.
fn retry_interval(basis: &crate::event::Basis) -> crate::time::Duration {
    use crate::settings::{OrgSettings, SettingKey};
    basis
        .settings
        .iter()
        .find(|u| u.key == SettingKey::TransientRetryIntervalMinutes.as_str())
        .and_then(|u| u.value.parse::<i64>().ok())
        .map_or_else(
            || OrgSettings::default().transient_retry_interval,
            crate::time::Duration::minutes,
        )
}

/// The CRM row a server item becomes, as far as the server item tells (version 0): the
/// `synced` snapshot of a link created from the mail server.
fn provisional_record(id: &RecordId, owner: Option<&UserId>, item: &RemoteItem) -> Record {
    use crate::event::RemoteFields;
    use crate::records::*;
    let owner = owner.cloned().unwrap_or_else(|| UserId::new(""));
    let body = match &item.fields {
        RemoteFields::Appointment {
            subject,
            organizer,
            start,
            end,
            show_as,
        } => RecordBody::Appointment(Appointment {
            subject: subject.clone(),
            organizer: organizer.as_ref().map(|email| Party {
                user: None,
                email: email.clone(),
                name: String::new(),
            }),
            required: Vec::new(),
            optional: Vec::new(),
            start: *start,
            end: *end,
            all_day: false,
            location: String::new(),
            body: String::new(),
            state: ActivityState::Scheduled,
            show_as: *show_as,
            priority: Priority::Normal,
            regarding: None,
            service: false,
            recurrence: None,
        }),
        RemoteFields::Contact { full_name, email } => RecordBody::Contact(Contact {
            full_name: full_name.clone(),
            email: email.clone(),
            phone: String::new(),
            company: String::new(),
            state: ContactState::Active,
        }),
        RemoteFields::Task {
            subject,
            percent_complete,
            due,
        } => RecordBody::Task(Task {
            kind: TaskKind::Task,
            subject: subject.clone(),
            body: String::new(),
            start: None,
            due: *due,
            actual_start: None,
            actual_end: None,
            percent_complete: *percent_complete,
            state: if *percent_complete >= 100 {
                ActivityState::Completed
            } else {
                ActivityState::Open
            },
            priority: Priority::Normal,
            regarding: None,
        }),
    };
    Record {
        id: id.clone(),
        owner,
        version: 0,
        body,
    }
}
