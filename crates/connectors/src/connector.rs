//! The mail-side contract: what every connector (vdir, later IMAP, CalDAV, CardDAV) does.
//!
//! A connector never decides. It turns server state into observations and carries out the
//! intents the engine decided, reporting each one's outcome. The actor runtime drives it with
//! two calls, both synchronous and both safe to repeat.
//!
//! # Cursor states
//!
//! A [`Cursor`] is opaque text owned by the connector that made it; the caller stores it and
//! hands it back unchanged. It tells the connector what the server held at the end of the last
//! listing, so that the next listing reports only what changed.
//!
//! | state   | how it is made                         | what the next [`Connector::list_changes`] does |
//! |---------|----------------------------------------|------------------------------------------------|
//! | Initial | [`Cursor::initial`] (first run, or after a cursor reset) | reports every item it can read as `item_seen`; nothing is known before, so never `item_gone` |
//! | Known   | returned by a listing                  | reports new and changed items as `item_seen`, and `item_gone` for items of the cursor positively missing from a complete listing |
//!
//! A cursor the connector cannot read (another connector's, or damaged) makes the listing
//! answer `listing_failed`; the caller may then start again from [`Cursor::initial`] and record
//! a `cursor_reset`.
//!
//! # What `list_changes` returns
//!
//! A [`Listing`]: [`Observation`]s in order, one [`ListingEnd`], item failures beside them, and
//! the new cursor. The observations are any number of `item_seen` (after a `cursor_reset` for a
//! collection whose sync state the server refused), then — when items are gone — one
//! `deletions_listed` naming them and their `item_gone`s; the end is exactly one terminal event,
//! last ([`Listing::events`] gives them in that order):
//!
//! - `listing_completed` — every collection was read; only then may `item_gone` appear, and only
//!   for an item that was in the cursor (known before) and is confirmed missing; how many
//!   deletes one cycle may make is the domain's delete breaker's to decide (R25), never the
//!   connector's;
//! - `listing_partial` — something could not be read: items seen are reported, no `item_gone`
//!   at all, and the missing items stay in the returned cursor as known, so that they are
//!   neither forgotten nor deleted (R25);
//! - `listing_failed` — nothing could be read: no `item_seen`, no `item_gone`, and the returned
//!   cursor is the one passed in.
//!
//! An item the connector can read but not understand (an unparsable file) is an
//! [`ItemFailure`], never a deletion: it is kept in the cursor as known with its previous
//! version, so it is reported again once it is repaired.
//!
//! # What `execute` returns
//!
//! Exactly one [`Outcome`] for the [`Intent`] (an [`IntentCall`]: a create, update, delete or
//! cancel intent, built by [`Intent::of`], which refuses any other event): `intent_succeeded`
//! (with the server id and version tag of the item written, when there is one) or
//! `intent_failed` (with a [`ServerError`] built from an [`ErrorKind`] by
//! [`ServerError::of_kind`]: the connector reports what happened, the domain's `classify`
//! decides whether it is permanent or transient). It never panics on bad input; the types let
//! it return no other event. Every call carries the intent's idempotency key: executing the same intent twice (a retry
//! after a crash between call and outcome) has the effect of executing it once and answers
//! `intent_succeeded` again.

use ledgersync_domain::event::{
    CancelIntent, CreateIntent, CursorReset, DeleteIntent, DeletionsListed, EmailReceived, Event,
    IntentFailed, IntentSucceeded, ItemGone, ItemSeen, ListingCompleted, ListingFailed,
    ListingPartial, ServerError, Side, UpdateIntent, Workload,
};
use ledgersync_domain::records::{Entity, Record};
use ledgersync_domain::{ErrorKind, EventId};
use std::fmt;
use std::sync::{Arc, Mutex};

/// What a connector remembers between two listings, as opaque text (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// The cursor of a first listing: nothing known.
    pub fn initial() -> Self {
        Self(String::new())
    }
    /// Wraps text previously obtained from [`Cursor::as_str`].
    pub fn from_text(text: impl Into<String>) -> Self {
        Self(text.into())
    }
    /// The cursor as text, to be stored by the caller.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// True for the initial cursor.
    pub fn is_initial(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An item the connector found but could not turn into an observation. The runtime records
/// it as an `item_failed` observation (R12, R79). Every listing reports again each item it still
/// cannot understand, not only new ones: a complete listing that does not report a failing item
/// ends its failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemFailure {
    /// The item: for vdir, the remote id (`calendar/<file>`).
    pub item: String,
    /// The table the item maps to, when the connector can tell (a vCard is a contact; an
    /// `.ics` that does not parse may be an event or a to-do).
    pub entity: Option<Entity>,
    /// What kind of failure (an unparsable file, a file name that is not UTF-8: `malformed`).
    pub kind: ErrorKind,
    /// What went wrong, in words a user can act on.
    pub error: String,
}

impl fmt::Display for ItemFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.item, self.error)
    }
}

/// What a listing reports before its end: an item seen, an item gone, the deletions about to
/// be reported, or a cursor the server invalidated. Nothing else: a connector cannot answer a
/// listing with a decision or an outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// `item_seen`: an item new or changed.
    Seen(ItemSeen),
    /// `item_gone`: an item of the cursor confirmed missing (complete listings only).
    Gone(ItemGone),
    /// `deletions_listed`: the `item_gone`s that follow, named before them (R25).
    DeletionsListed(DeletionsListed),
    /// `cursor_reset`: the server invalidated the sync cursor of a collection.
    CursorReset(CursorReset),
    /// `email_received`: an incoming email (its facts are looked up by the engine).
    Email(Box<EmailReceived>),
}

impl From<Observation> for Event {
    fn from(o: Observation) -> Self {
        match o {
            Observation::Seen(p) => Event::ItemSeen(p),
            Observation::Gone(p) => Event::ItemGone(p),
            Observation::DeletionsListed(p) => Event::DeletionsListed(p),
            Observation::CursorReset(p) => Event::CursorReset(p),
            Observation::Email(p) => Event::EmailReceived(*p),
        }
    }
}

/// How a listing ended: exactly one per listing, after its observations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListingEnd {
    /// `listing_completed`: every collection was read.
    Completed(ListingCompleted),
    /// `listing_partial`: something could not be read; no `item_gone` in the listing.
    Partial(ListingPartial),
    /// `listing_failed`: nothing could be read; no observation at all.
    Failed(ListingFailed),
}

impl ListingEnd {
    /// The workload the listing was for.
    pub fn workload(&self) -> Workload {
        match self {
            ListingEnd::Completed(p) => p.workload,
            ListingEnd::Partial(p) => p.workload,
            ListingEnd::Failed(p) => p.workload,
        }
    }
    /// The event type name (`listing_completed`, `listing_partial` or `listing_failed`).
    pub fn name(&self) -> &'static str {
        match self {
            ListingEnd::Completed(_) => "listing_completed",
            ListingEnd::Partial(_) => "listing_partial",
            ListingEnd::Failed(_) => "listing_failed",
        }
    }
}

impl From<ListingEnd> for Event {
    fn from(end: ListingEnd) -> Self {
        match end {
            ListingEnd::Completed(p) => Event::ListingCompleted(p),
            ListingEnd::Partial(p) => Event::ListingPartial(p),
            ListingEnd::Failed(p) => Event::ListingFailed(p),
        }
    }
}

/// The result of one [`Connector::list_changes`].
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    /// `item_seen`, then `deletions_listed` and its `item_gone`s (complete listings only), in
    /// order; empty for a failed listing.
    pub observations: Vec<Observation>,
    /// How the listing ended: the one terminal event, after the observations.
    pub end: ListingEnd,
    /// Items found but not understood (reported to the user, never deletions).
    pub failures: Vec<ItemFailure>,
    /// The cursor to pass to the next listing.
    pub cursor: Cursor,
}

impl Listing {
    /// A listing of `workload` that failed with `error`: nothing observed, `listing_failed`,
    /// and the cursor it was given (the next listing reads the same changes again).
    pub fn failed(workload: Workload, cursor: &Cursor, error: ServerError) -> Listing {
        Listing {
            observations: Vec::new(),
            end: ListingEnd::Failed(ListingFailed { workload, error }),
            failures: Vec::new(),
            cursor: cursor.clone(),
        }
    }

    /// True when the listing ended with `listing_completed`.
    pub fn is_complete(&self) -> bool {
        matches!(self.end, ListingEnd::Completed(_))
    }
    /// The listing as events, in order: the observations, then the terminal event last.
    pub fn events(self) -> Vec<Event> {
        let mut events: Vec<Event> = self.observations.into_iter().map(Event::from).collect();
        events.push(self.end.into());
        events
    }
}

/// The intent a connector carries out: one of the four intent payloads, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentCall<'a> {
    /// `create_intent`.
    Create(&'a CreateIntent),
    /// `update_intent`.
    Update(&'a UpdateIntent),
    /// `delete_intent`.
    Delete(&'a DeleteIntent),
    /// `cancel_intent` (always mail-side: an iMIP cancellation).
    Cancel(&'a CancelIntent),
}

impl<'a> IntentCall<'a> {
    /// The intent of `event`, when it is a create, update, delete or cancel intent that targets
    /// the mail server; `None` for any other event (a CRM-side intent included).
    pub fn of(event: &'a Event) -> Option<Self> {
        match event {
            Event::CreateIntent(p) if p.target == Side::MailServer => Some(IntentCall::Create(p)),
            Event::UpdateIntent(p) if p.target == Side::MailServer => Some(IntentCall::Update(p)),
            Event::DeleteIntent(p) if p.target == Side::MailServer => Some(IntentCall::Delete(p)),
            Event::CancelIntent(p) => Some(IntentCall::Cancel(p)),
            _ => None,
        }
    }
}

/// One intent to carry out, as the runtime hands it to a connector.
#[derive(Clone, Copy, Debug)]
pub struct Intent<'a> {
    /// The id of the intent event (the outcome names it).
    pub id: EventId,
    /// The decision: a create, update, delete or cancel intent.
    pub call: IntentCall<'a>,
    /// The CRM row the intent is about, as the mailbox state holds it, when known. A create
    /// needs it to write what the intent itself does not carry (the table, times, organizer,
    /// attendees, a contact's address); an update or a delete does not.
    pub record: Option<&'a Record>,
}

impl<'a> Intent<'a> {
    /// The intent of event `id`, when `event` is an intent for the mail server (see
    /// [`IntentCall::of`]); `None` for any other event, which never reaches a connector.
    pub fn of(id: EventId, event: &'a Event, record: Option<&'a Record>) -> Option<Self> {
        Some(Self {
            id,
            call: IntentCall::of(event)?,
            record,
        })
    }
}

/// What [`Connector::execute`] answers: the intent's outcome, and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `intent_succeeded`.
    Succeeded(IntentSucceeded),
    /// `intent_failed`.
    Failed(IntentFailed),
}

impl Outcome {
    /// `intent_failed` with `unsupported`: a connector that carries out no intent of this
    /// kind (`what` says what it does instead).
    pub fn unsupported(intent: EventId, what: &str) -> Outcome {
        Outcome::Failed(IntentFailed {
            intent,
            error: ServerError::of_kind(ErrorKind::Unsupported, what.to_string()),
            crm: None,
        })
    }

    /// The id of the intent this outcome answers.
    pub fn intent(&self) -> EventId {
        match self {
            Outcome::Succeeded(p) => p.intent,
            Outcome::Failed(p) => p.intent,
        }
    }
}

impl From<Outcome> for Event {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Succeeded(p) => Event::IntentSucceeded(p),
            Outcome::Failed(p) => Event::IntentFailed(p),
        }
    }
}

/// The mail-side contract (see the module doc for the state machine).
///
/// Synchronous and `Send`: the runtime calls it from one actor at a time, on a thread where
/// blocking is allowed. Object-safe: the runtime holds `Box<dyn Connector>`.
pub trait Connector: Send {
    /// Lists what changed since `cursor`: observations, item failures and the new cursor.
    /// Never fails as a call: a server that cannot be read is a `listing_failed` observation.
    fn list_changes(&mut self, cursor: &Cursor) -> Listing;

    /// Carries out one intent and returns its outcome: `intent_succeeded` or `intent_failed`.
    fn execute(&mut self, intent: Intent<'_>) -> Outcome;

    /// The workload its listings are for: ACT (appointments, contacts, tasks) by default, the
    /// incoming email for the IMAP connector. The runtime runs one driver per mailbox and
    /// workload, on that workload's cadence.
    fn workload(&self) -> Workload {
        Workload::Act
    }

    /// The cursor after this connector's own write: `outcome` of `intent`, already recorded.
    /// An item it created must become known, so that a deletion by someone else before the
    /// next listing is reported gone (a cursor that never knew the item would report nothing,
    /// and the link would stay on a file that no longer exists); the next listing still
    /// reports it seen, the first sighting that records its content. The default keeps the
    /// cursor: for a connector whose listing reports its own writes either way.
    fn remember(&self, cursor: &Cursor, intent: IntentCall<'_>, outcome: &Outcome) -> Cursor {
        let _ = (intent, outcome);
        cursor.clone()
    }

    /// Test & Enable (R6): connects, authenticates and finds the collections, recording
    /// nothing and keeping no cursor. `Ok` says what was found, `Err` what the server answered
    /// (the domain classifies it). The default lists every collection from the initial cursor:
    /// a complete or partial listing is a success, a failed one is the failure.
    fn test_connection(&mut self) -> Result<String, ServerError> {
        let listing = self.list_changes(&Cursor::initial());
        let seen = listing
            .observations
            .iter()
            .filter(|o| matches!(o, Observation::Seen(_) | Observation::Email(_)))
            .count();
        let unreadable = listing.failures.len();
        match listing.end {
            ListingEnd::Failed(f) => Err(f.error),
            ListingEnd::Partial(p) => Ok(format!(
                "{seen} item(s) listed, {unreadable} unreadable; the listing was partial: {}",
                p.reason
            )),
            _ => Ok(format!("{seen} item(s) listed, {unreadable} unreadable")),
        }
    }
}

/// A hook an update calls with the item's server id between reading the item and writing it
/// back: tests of the write precondition use it to play another client editing the item in
/// that window. Empty by default.
#[derive(Clone, Default)]
pub(crate) struct WriteHook(Option<Arc<Mutex<BeforeWrite>>>);

/// The hook of `set_before_write` (vdir and DAV connectors): called with the item's server id.
#[doc(hidden)]
pub type BeforeWrite = Box<dyn FnMut(&str) + Send>;

impl WriteHook {
    pub(crate) fn new(hook: Option<BeforeWrite>) -> Self {
        Self(hook.map(|h| Arc::new(Mutex::new(h))))
    }
    pub(crate) fn call(&self, remote: &str) {
        if let Some(hook) = &self.0 {
            let mut hook = hook.lock().unwrap_or_else(|e| e.into_inner());
            hook(remote);
        }
    }
}

impl fmt::Debug for WriteHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "WriteHook(set)"
        } else {
            "WriteHook(none)"
        })
    }
}

/// Builds an `intent_failed` outcome of `kind` (the domain classifies it).
pub(crate) fn failed(intent: EventId, kind: ErrorKind, message: impl Into<String>) -> Outcome {
    Outcome::Failed(IntentFailed {
        intent,
        error: ServerError::of_kind(kind, message),
        crm: None,
    })
}

/// Builds an `intent_succeeded` outcome.
pub(crate) fn succeeded(intent: EventId, remote: Option<String>, etag: Option<String>) -> Outcome {
    Outcome::Succeeded(IntentSucceeded {
        intent,
        remote: remote.map(ledgersync_domain::RemoteId::new),
        etag,
        crm: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{VdirConfig, VdirConnector};

    #[test]
    fn the_runtime_can_hold_any_connector_as_a_boxed_send_object() {
        fn assert_send<T: Send>(_: &T) {}
        let mut boxed: Box<dyn Connector> =
            Box::new(VdirConnector::new(VdirConfig::new("paul@serenity.example")));
        assert_send(&boxed);
        // Nothing configured: the listing fails, it does not panic.
        let listing = boxed.list_changes(&Cursor::initial());
        assert!(matches!(listing.end, ListingEnd::Failed(_)));
        assert!(!listing.is_complete());
        assert!(listing.cursor.is_initial());
    }
}
