//! The connector driver: runs one mailbox's [`Connector`] against the registry.
//!
//! A [`Driver`] owns one mailbox's connector and its cursor. Two calls make up its work:
//!
//! - [`Driver::cycle`]: list what changed since the stored cursor (the blocking connector call
//!   runs on tokio's blocking pool), give every observation to the mailbox in the order the
//!   connector returned them, in chunks recorded in one append each ([`ObserveMailboxAll`]:
//!   one group commit per chunk, not per observation) (the terminal
//!   `listing_completed` / `listing_partial` / `listing_failed` last), and only then store the
//!   new cursor, atomically, in a small file of the data directory;
//! - [`Driver::execute_pending`]: for every intent of the mailbox state that targets the mail
//!   server, belongs to the driver's workload (ACT: items; outgoing: the emails to send, R75;
//!   the incoming driver carries out none) and has no outcome yet, read the intent event (from the decisions this driver saw,
//!   else from the journal), call [`Connector::execute`] with it and the CRM row the state
//!   holds, and give the outcome back to the mailbox as an observation caused by the intent.
//!   An intent that failed is executed again only once its retry time has come (the state's
//!   [`PendingIntent::due`](ledgersync_domain::state::PendingIntent::due) on the engine clock:
//!   the recorded failure plus `transient_retry_interval_minutes`, or the server's honoured
//!   Retry-After), and never after the failure that reached `transient_retry_limit` closed it
//!   (R11, R12). The driver only reads the time the domain decided.
//!
//! Principle 3 of the architecture (intent, then call, then outcome): an intent is durable
//! before it is executed, and the pending intents are read from the mailbox state, which is
//! rebuilt from the log after a restart. A crash between the call and the outcome leaves the
//! intent pending; the next `execute_pending` (of this driver or of a new one after a restart)
//! executes it again with the same idempotency key, which the connector turns into the effect
//! of one execution.
//!
//! One driver per mailbox, one call at a time (`&mut self`): the pending intents are a
//! snapshot taken at the start of `execute_pending`, so an intent closed meanwhile by another
//! observation may still be executed once more — harmless with an idempotent connector, and its
//! outcome, naming an intent no longer pending, changes nothing and decides nothing.
//!
//! # The cursor and its crash window
//!
//! What follows a `listing_failed` is the domain's cursor reset policy
//! ([`ledgersync_domain::policy::cursor_reset`], R25): when the connector could not read the
//! stored cursor (kind `cursor`), the driver records the `cursor_reset` the policy builds and
//! stores the initial cursor, so the next listing reports every item as seen and no
//! `item_gone`; items it does not show stay unknown, never deleted. The driver only carries
//! this out.
//!
//! A server's Retry-After is paced by the domain's policy too
//! ([`ledgersync_domain::policy::retry_after`], R11, R15): the driver holds the credential's
//! connections for [`credential_hold`] and nothing more.
//!
//! The event catalogue has no event for a cursor yet, so the cursor lives in
//! `<data dir>/<mailbox>.cursor`, written to a temporary file, fsynced, renamed over the old
//! one, and the directory fsynced. It is written after every observation of the listing is
//! durable. A crash between the two re-lists from the older cursor: items seen again change
//! nothing (same content hash, or a link already moved), and `item_gone` is reported only for
//! items the older cursor knew and that are still missing, which the first listing's
//! `item_gone` already decided (the link is no longer active, so nothing is decided twice).

use crate::actor::ActorError;
use crate::org::LookupEmailFacts;
use crate::registry::{InspectMailbox, ObserveMailboxAll, Registry};
use crate::sink::{BusSink, OBSERVATION_CHUNK, Replies, Reply, Sink};
use crate::throttle::{Credential, Throttle};
use actix::{Addr, MailboxError, Recipient};
use ledgersync_bus::BusMessage;
use ledgersync_connectors::{Connector, Cursor, Intent, IntentCall, ItemFailure, Listing, Outcome};
use ledgersync_domain::email::Message;
use ledgersync_domain::event::{EmailFacts, EmailReceived, ItemFailed, ServerError, Workload};
use ledgersync_domain::policy::cursor_reset;
use ledgersync_domain::policy::retry_after::credential_hold;
use ledgersync_domain::records::Record;
use ledgersync_domain::{
    Event, EventId, ItemKey, MailboxId, MailboxState, RecordId, RemoteId, StreamId, Timestamp,
};
use ledgersync_engine::EngineError;
use ledgersync_engine::{Clock as _, IdGen, SystemClock};

use ledgersync_engine::engine::Appended;
use ledgersync_engine::log::Stored;
use ledgersync_engine::mailbox::Incoming;
use ledgersync_journal::{Journal, ReadError};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// How many times an observation refused with an append conflict is sent again (same event
/// id: the refused append wrote nothing, and the mailbox restarts from its log).
const CONFLICT_RETRIES: u32 = 3;

/// Page size when the intent is looked for in the whole mailbox stream.
const STREAM_PAGE: usize = 1024;

/// Why a driver call stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The registry no longer answers (its System stopped).
    #[error(
        "the registry did not answer for mailbox `{mailbox}`: {source}; is the actix System still running?"
    )]
    Registry {
        /// The mailbox.
        mailbox: MailboxId,
        /// What actix said.
        source: MailboxError,
    },
    /// The mailbox refused or failed an observation; nothing of it was recorded, and the
    /// cursor was not advanced, so the next cycle lists the same changes again.
    #[error("mailbox `{mailbox}`: {source}")]
    Mailbox {
        /// The mailbox.
        mailbox: MailboxId,
        /// The actor's answer.
        source: ActorError,
    },
    /// The journal could not be read while looking for an intent event.
    #[error("mailbox `{mailbox}`: cannot read the intent {intent} from the journal: {source}")]
    Journal {
        /// The mailbox.
        mailbox: MailboxId,
        /// The intent looked for.
        intent: EventId,
        /// The journal's answer.
        source: Box<EngineError>,
    },
    /// A pending intent of the state is in neither the driver's memory nor the journal.
    #[error(
        "mailbox `{mailbox}`: the pending intent {intent} is not in its stream; the state and \
         the journal disagree — rebuild the mailbox from its log"
    )]
    IntentMissing {
        /// The mailbox.
        mailbox: MailboxId,
        /// The intent.
        intent: EventId,
    },
    /// The cursor file could not be read or written.
    #[error("cursor file {}: {source}; check that the data directory is writable", path.display())]
    Cursor {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// An observation could not go through the bus, or was not answered; nothing more of the
    /// listing is sent and the cursor stays.
    #[error("mailbox `{mailbox}`: the bus: {reason}")]
    Bus {
        /// The mailbox.
        mailbox: MailboxId,
        /// Why.
        reason: String,
    },
    /// The organization could not look up the facts of the listing's incoming emails; nothing
    /// of the listing was recorded and the cursor stays, so the next cycle reads them again.
    #[error(
        "mailbox `{mailbox}`: the facts of its incoming emails could not be looked up: \
         {reason}; nothing of the listing was recorded, the next cycle reads it again"
    )]
    Facts {
        /// The mailbox.
        mailbox: MailboxId,
        /// Why.
        reason: String,
    },
    /// The connector call did not return (it panicked, or the runtime shut down).
    #[error("mailbox `{mailbox}`: the connector call did not complete: {reason}")]
    Connector {
        /// The mailbox.
        mailbox: MailboxId,
        /// Why.
        reason: String,
    },
}

/// Why a chunk of observations did not go through the bus.
enum Published {
    /// Its message is over the bus's size limit: nothing was published.
    TooLarge,
    /// Anything else.
    Failed(DriverError),
}

/// What one [`Driver::cycle`] did.
#[derive(Debug, Clone)]
pub struct CycleReport {
    /// The observations given to the mailbox, in order (the terminal event last).
    pub observations: Vec<(EventId, Event)>,
    /// The decisions they caused, in order.
    pub decisions: Vec<Appended>,
    /// Items the connector found but could not read (never deletions); each is also among the
    /// observations as an `item_failed`.
    pub failures: Vec<ItemFailure>,
    /// The terminal event's type name (`listing_completed`, `listing_partial`,
    /// `listing_failed`).
    pub terminal: &'static str,
    /// True when the stored cursor changed.
    pub cursor_advanced: bool,
    /// True when the connector could not read the stored cursor: a `cursor_reset` was
    /// recorded after the `listing_failed`, and the initial cursor stored.
    pub cursor_reset: bool,
}

impl CycleReport {
    /// The observations of one type (`item_seen`, `item_gone`, ...).
    pub fn count(&self, event_type: &str) -> usize {
        self.observations
            .iter()
            .filter(|(_, e)| e.name() == event_type)
            .count()
    }
}

/// What one [`Driver::execute_pending`] did.
#[derive(Debug, Clone, Default)]
pub struct ExecuteReport {
    /// Each intent executed and its outcome (`intent_succeeded` / `intent_failed`), in the
    /// order executed.
    pub outcomes: Vec<(EventId, Event)>,
    /// The decisions the outcomes caused.
    pub decisions: Vec<Appended>,
    /// Intents that failed before and were not executed: their retry time, decided by their
    /// last failure (R11, R12), is still to come.
    pub waiting: Vec<(EventId, Timestamp)>,
}

impl ExecuteReport {
    /// How many outcomes were `intent_succeeded`.
    pub fn succeeded(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, e)| matches!(e, Event::IntentSucceeded(_)))
            .count()
    }
}

/// An intent event as the driver knows it: the decision and its flow.
#[derive(Debug, Clone)]
struct KnownIntent {
    event: Event,
    correlation: EventId,
}

/// Runs one mailbox's connector against the registry (see the module doc).
pub struct Driver {
    mailbox: MailboxId,
    /// The workload of the connector's listings ([`Connector::workload`]).
    workload: Workload,
    registry: Addr<Registry>,
    journal: Arc<dyn Journal>,
    connector: Arc<Mutex<Box<dyn Connector>>>,
    cursor_path: PathBuf,
    cursor: Cursor,
    intents: HashMap<EventId, KnownIntent>,
    throttle: Option<(Arc<Throttle>, Credential)>,
    sink: Sink,
    /// A listing begun ahead of the cycle that uses it ([`Driver::begin_listing`]).
    early: Option<tokio::task::JoinHandle<Result<Listing, DriverError>>>,
    /// Where the facts of incoming emails are looked up before they are recorded.
    facts: Option<Recipient<LookupEmailFacts>>,
}

impl Driver {
    /// A driver of `mailbox` with `connector`, for the connector's workload; the cursor is
    /// kept in `data_dir` (created when missing; `<mailbox>.cursor` for ACT,
    /// `<mailbox>.incoming.cursor` for the incoming email) and read from there now, so a new
    /// driver carries on where the last one stored.
    pub fn new(
        mailbox: MailboxId,
        connector: Box<dyn Connector>,
        registry: Addr<Registry>,
        journal: Arc<dyn Journal>,
        data_dir: &Path,
    ) -> Result<Self, DriverError> {
        let workload = connector.workload();
        let cursor_path = data_dir.join(format!(
            "{}{}.cursor",
            file_stem(&mailbox),
            match workload {
                Workload::Act => "",
                Workload::Incoming => ".incoming",
                Workload::Outgoing => ".outgoing",
            }
        ));
        fs::create_dir_all(data_dir).map_err(|source| DriverError::Cursor {
            path: cursor_path.clone(),
            source,
        })?;
        let cursor = match fs::read_to_string(&cursor_path) {
            Ok(text) => Cursor::from_text(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Cursor::initial(),
            Err(source) => {
                return Err(DriverError::Cursor {
                    path: cursor_path,
                    source,
                });
            }
        };
        Ok(Self {
            mailbox,
            workload,
            registry,
            journal,
            connector: Arc::new(Mutex::new(connector)),
            cursor_path,
            cursor,
            intents: HashMap::new(),
            throttle: None,
            sink: Sink::Direct,
            early: None,
            facts: None,
        })
    }

    /// The facts of each incoming email are looked up through `facts` (the organization
    /// actor) before it is recorded (decision 0018). Without it an email is recorded with no
    /// facts, and is decided as one that refers to nothing the organization knows.
    pub fn with_facts(mut self, facts: Recipient<LookupEmailFacts>) -> Self {
        self.facts = Some(facts);
        self
    }

    /// The workload of its listings.
    pub fn workload(&self) -> Workload {
        self.workload
    }

    /// Observations go to `sink` (default: straight to the mailbox actor).
    pub fn with_sink(mut self, sink: Sink) -> Self {
        self.sink = sink;
        self
    }

    /// Every connector call first takes a connection of `credential` from `throttle` (R15).
    pub fn with_throttle(mut self, throttle: Arc<Throttle>, credential: Credential) -> Self {
        self.throttle = Some((throttle, credential));
        self
    }

    /// The mailbox.
    pub fn mailbox(&self) -> &MailboxId {
        &self.mailbox
    }

    /// The stored cursor.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The file the cursor is stored in.
    pub fn cursor_path(&self) -> &Path {
        &self.cursor_path
    }

    /// One listing: changes since the stored cursor, given to the mailbox in order, then the
    /// new cursor stored. On an error nothing more is observed and the cursor stays, so the
    /// next cycle lists the same changes again.
    pub async fn cycle(&mut self) -> Result<CycleReport, DriverError> {
        let listing: Listing = match self.early.take() {
            Some(begun) => begun.await.map_err(|e| DriverError::Connector {
                mailbox: self.mailbox.clone(),
                reason: e.to_string(),
            })??,
            None => {
                let cursor = self.cursor.clone();
                self.call(move |connector| connector.list_changes(&cursor))
                    .await?
            }
        };
        let Listing {
            observations,
            end,
            failures,
            cursor,
        } = listing;
        // Each item failure is recorded as an `item_failed` (R12, R79), before the terminal
        // event, so the listing's end sees every failure it found.
        let workload = end.workload();
        let mut observations: Vec<Event> = observations.into_iter().map(Event::from).collect();
        self.look_up_facts(&mut observations).await?;
        for failure in &failures {
            tracing::warn!(mailbox = %self.mailbox, item = %failure.item, error = %failure.error, "item not readable; recorded as item_failed, kept as known, never deleted");
            observations.push(item_failed(workload, failure));
        }
        observations.push(end.into());
        let terminal = observations.last().map(Event::name).unwrap_or("none");
        if let Some(Event::ListingFailed(f)) = observations.last() {
            self.honour_retry_after(&f.error);
        }
        // One flow per listing: every observation shares the first one's id as correlation.
        let mut correlation = None;
        let mut observed = Vec::with_capacity(observations.len());
        let mut incomings = Vec::with_capacity(observations.len());
        for event in observations {
            let id = IdGen.next();
            let correlation = *correlation.get_or_insert(id);
            incomings.push(Incoming {
                event: event.clone(),
                id,
                causation: Vec::new(),
                correlation,
            });
            observed.push((id, event));
        }
        let mut decisions = self.observe_all(incomings).await?;
        // The domain's cursor reset policy (R25): a cursor the connector cannot read (another
        // connector's, or damaged) is recorded as a `cursor_reset`, and the next listing starts
        // from the initial cursor (it reports every item as seen and never an `item_gone`).
        let mut cursor = cursor;
        let mut cursor_reset = false;
        if let Some((failed, Event::ListingFailed(f))) = observed.last()
            && let Some(reset) = cursor_reset::on_listing_failed(f, self.cursor.is_initial())
        {
            let id = IdGen.next();
            let reset = Event::CursorReset(reset);
            let incoming = Incoming {
                event: reset.clone(),
                id,
                causation: vec![*failed],
                correlation: correlation.unwrap_or(id),
            };
            decisions.extend(self.observe_all(vec![incoming]).await?);
            observed.push((id, reset));
            cursor = Cursor::initial();
            cursor_reset = true;
        }
        let cursor_advanced = cursor != self.cursor;
        if cursor_advanced {
            // Only now: every observation of the listing is durable.
            store_cursor(&self.cursor_path, &cursor)?;
            self.cursor = cursor;
        }
        Ok(CycleReport {
            observations: observed,
            decisions,
            failures,
            terminal,
            cursor_advanced,
            cursor_reset,
        })
    }

    /// Begins the next cycle's listing now, from the stored cursor, while the caller does
    /// something else (a one-shot `mailbox sync` starts it before the service has recovered the
    /// mailbox, so the server's time overlaps the start). The next [`Driver::cycle`] records
    /// it; [`Driver::execute_pending`] drops it before it carries out any intent, since a
    /// listing read before the driver's own writes would report them as someone else's
    /// (the cycle then lists again). Without a tokio runtime, or with a listing already
    /// begun, it does nothing.
    pub fn begin_listing(&mut self) {
        if self.early.is_some() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let cursor = self.cursor.clone();
        let connector = self.connector.clone();
        let throttle = self.throttle.clone();
        let mailbox = self.mailbox.clone();
        self.early = Some(tokio::spawn(async move {
            let _permit = match &throttle {
                Some((throttle, credential)) => Some(throttle.acquire(credential).await),
                None => None,
            };
            tokio::task::spawn_blocking(move || {
                let mut guard = connector.lock().unwrap_or_else(PoisonError::into_inner);
                guard.list_changes(&cursor)
            })
            .await
            .map_err(|e| DriverError::Connector {
                mailbox,
                reason: e.to_string(),
            })
        }));
    }

    /// Executes every intent of the mailbox state that targets the mail server and has no
    /// outcome yet, in the order decided, and records each outcome; deletes and cancellations
    /// wait while the mailbox's delete breaker is open (`MailboxState::held_by_breaker`, R25).
    /// Intents decided by these outcomes wait for the next call; an intent that failed transiently stays pending and
    /// is tried again, with the same key, by the first call at or after the retry time its
    /// failure decided (on the engine clock); the failure that reaches the retry limit closes
    /// it, and it is never executed again.
    ///
    /// Only the ACT driver carries out intents: a driver of another workload (the incoming
    /// email's) lists and does nothing here.
    pub async fn execute_pending(&mut self) -> Result<ExecuteReport, DriverError> {
        if self.workload == Workload::Incoming {
            return Ok(ExecuteReport::default());
        }
        let (state, now) = self.state().await?;
        // Forget intents that have their outcome.
        self.intents.retain(|id, _| state.intents.contains_key(id));
        let mut report = ExecuteReport::default();
        // Event ids are UUID v7, time-ordered: id order is the order decided. An intent that
        // failed waits for the retry time its failure decided (R11, R12); one given up is no
        // longer pending at all.
        let pending: Vec<EventId> = state
            .intents
            .iter()
            .filter(|(_, p)| !p.to_crm)
            // Each driver carries out its own workload's intents: the ACT driver the items,
            // the outgoing driver the emails to send (R75).
            .filter(|(_, p)| state.intent_workload(p) == self.workload)
            // Deletes and cancellations wait while the delete breaker is open (R25).
            .filter(|(_, p)| !state.held_by_breaker(p))
            .filter(|(id, p)| {
                let due = p.due(now);
                if !due {
                    report.waiting.push((**id, p.retry_at.unwrap_or(now)));
                }
                due
            })
            .map(|(id, _)| *id)
            .collect();
        if !pending.is_empty() && self.early.take().is_some() {
            tracing::debug!(mailbox = %self.mailbox, "intents to carry out: the listing begun early is dropped, the cycle lists after them");
        }
        for id in pending {
            let intent_record = &state.intents[&id].record;
            let known = self.intent(id, intent_record).await?;
            let record: Option<Record> = state
                .records
                .get(intent_record)
                .or_else(|| state.links.get(intent_record).map(|l| &l.synced))
                .map(|r| r.as_ref().clone());
            let event = known.event.clone();
            // Only an intent for the mail server reaches the connector: an event the state
            // counts as one but the journal does not is a disagreement to rebuild from.
            let outcome = self
                .call(move |connector| {
                    Intent::of(id, &event, record.as_ref()).map(|intent| connector.execute(intent))
                })
                .await?
                .ok_or_else(|| DriverError::IntentMissing {
                    mailbox: self.mailbox.clone(),
                    intent: id,
                })?;
            if let Outcome::Failed(f) = &outcome {
                self.honour_retry_after(&f.error);
                tracing::warn!(mailbox = %self.mailbox, intent = %id, code = %f.error.code, error = %f.error.message, "intent failed");
            }
            let incoming = Incoming {
                event: outcome.clone().into(),
                id: IdGen.next(),
                causation: vec![id],
                correlation: known.correlation,
            };
            report
                .decisions
                .extend(self.observe_all(vec![incoming]).await?);
            // Now that the outcome is durable, the item written is known to the cursor: a
            // deletion by someone else before the next listing is then reported gone.
            let remembered = {
                let connector = self
                    .connector
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match IntentCall::of(&known.event) {
                    Some(intent) => connector.remember(&self.cursor, intent, &outcome),
                    None => self.cursor.clone(),
                }
            };
            if remembered != self.cursor {
                store_cursor(&self.cursor_path, &remembered)?;
                self.cursor = remembered;
            }
            report.outcomes.push((id, outcome.into()));
        }
        Ok(report)
    }

    /// Fills in the facts of every incoming email among `observations` from the organization
    /// (one lookup for the whole listing), so that the decision, its replay and `what-if` read
    /// what was known when it was made. An email that already carries facts keeps them.
    async fn look_up_facts(&self, observations: &mut [Event]) -> Result<(), DriverError> {
        let Some(facts) = &self.facts else {
            return Ok(());
        };
        let mut emails: Vec<&mut EmailReceived> = observations
            .iter_mut()
            .filter_map(|e| match e {
                Event::EmailReceived(m) if m.facts == EmailFacts::default() => Some(m),
                _ => None,
            })
            .collect();
        if emails.is_empty() {
            return Ok(());
        }
        let messages = emails.iter().map(|m| Message::from(&**m)).collect();
        let found = facts
            .send(LookupEmailFacts {
                mailbox: self.mailbox.clone(),
                messages,
            })
            .await
            .map_err(|e| DriverError::Facts {
                mailbox: self.mailbox.clone(),
                reason: format!("the organization actor did not answer ({e})"),
            })?
            .map_err(|e| DriverError::Facts {
                mailbox: self.mailbox.clone(),
                reason: e.to_string(),
            })?;
        for (email, facts) in emails.iter_mut().zip(found) {
            email.facts = facts;
        }
        Ok(())
    }

    /// The mailbox state, from its actor, and the engine clock's time when it was read.
    async fn state(&self) -> Result<(std::sync::Arc<MailboxState>, Timestamp), DriverError> {
        let view = self
            .registry
            .send(InspectMailbox::new(self.mailbox.clone()))
            .await
            .map_err(|source| DriverError::Registry {
                mailbox: self.mailbox.clone(),
                source,
            })?
            .map_err(|source| DriverError::Mailbox {
                mailbox: self.mailbox.clone(),
                source,
            })?;
        Ok((view.state, view.now))
    }

    /// Gives observations to the mailbox, in order, through the sink; answers their
    /// decisions, in order.
    async fn observe_all(
        &mut self,
        incomings: Vec<Incoming>,
    ) -> Result<Vec<Appended>, DriverError> {
        let mut decisions = Vec::new();
        match self.sink.clone() {
            Sink::Direct => {
                // Chunks of at most OBSERVATION_CHUNK, each recorded in one append (one group
                // commit instead of one per observation), in order.
                for chunk in incomings.chunks(OBSERVATION_CHUNK) {
                    decisions.extend(self.observe_chunk(chunk).await?);
                }
            }
            Sink::Bus(bus) => {
                // Chunks of at most OBSERVATION_CHUNK; one over the bus's size limit is sent
                // again as two halves (a single observation over it is an error).
                let mut pending: Vec<&[Incoming]> =
                    incomings.chunks(OBSERVATION_CHUNK).rev().collect();
                while let Some(chunk) = pending.pop() {
                    match self.publish_and_wait(&bus, chunk).await {
                        Err(Published::TooLarge) if chunk.len() > 1 => {
                            let (first, second) = chunk.split_at(chunk.len() / 2);
                            pending.push(second);
                            pending.push(first);
                        }
                        Err(Published::TooLarge) => {
                            return Err(DriverError::Bus {
                                mailbox: self.mailbox.clone(),
                                reason: format!(
                                    "observation {} is over the bus's size limit",
                                    chunk[0].id
                                ),
                            });
                        }
                        Err(Published::Failed(e)) => return Err(e),
                        Ok(decided) => decisions.extend(decided),
                    }
                }
            }
        }
        Ok(decisions)
    }

    /// Publishes `chunk` to the mailbox's partition, as one `mail-observations` message, and
    /// waits for the consumer's answers.
    async fn publish_and_wait(
        &mut self,
        bus: &BusSink,
        chunk: &[Incoming],
    ) -> Result<Vec<Appended>, Published> {
        let waits: Vec<_> = chunk
            .iter()
            .map(|i| (i.id, bus.replies.wait_for(i.id)))
            .collect();
        let forget = |replies: &Replies| {
            for incoming in chunk {
                replies.forget(&incoming.id);
            }
        };
        // The chunk travels as one message: one publish, one delivery, one append.
        let messages = vec![BusMessage::MailObservations {
            mailbox: self.mailbox.clone(),
            incomings: chunk.to_vec(),
        }];
        if let Err(e) = bus.publish.publish(messages).await {
            forget(&bus.replies);
            if let ledgersync_bus::PublishError::TooLarge { .. } = e {
                return Err(Published::TooLarge);
            }
            return Err(Published::Failed(DriverError::Bus {
                mailbox: self.mailbox.clone(),
                reason: e.to_string(),
            }));
        }
        let mut decisions = Vec::new();
        for ((id, wait), incoming) in waits.into_iter().zip(chunk) {
            let reply = match tokio::time::timeout(bus.timeout, wait).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(_)) | Err(_) => {
                    forget(&bus.replies);
                    return Err(Published::Failed(DriverError::Bus {
                        mailbox: self.mailbox.clone(),
                        reason: format!(
                            "observation {id} was published but not answered within {:?}: is \
                             this node's consumer of the mailbox's partition active? (another \
                             node may hold it; the observation is decided there)",
                            bus.timeout
                        ),
                    }));
                }
            };
            match reply {
                Reply::Decided(appended) => {
                    self.remember_intents(&appended, incoming.correlation);
                    decisions.extend(appended);
                }
                Reply::Refused(reason) => {
                    forget(&bus.replies);
                    return Err(Published::Failed(DriverError::Bus {
                        mailbox: self.mailbox.clone(),
                        reason: format!("observation {id} was dead-lettered: {reason}"),
                    }));
                }
            }
        }
        Ok(decisions)
    }

    fn remember_intents(&mut self, decisions: &[Appended], correlation: EventId) {
        for appended in decisions {
            if is_intent(&appended.decision.event) {
                self.intents.insert(
                    appended.id,
                    KnownIntent {
                        event: appended.decision.event.clone(),
                        correlation,
                    },
                );
            }
        }
    }

    /// Gives observations to the mailbox, recorded in one append; remembers the intents they
    /// decided.
    async fn observe_chunk(&mut self, chunk: &[Incoming]) -> Result<Vec<Appended>, DriverError> {
        let mut attempt = 0;
        let decided = loop {
            attempt += 1;
            let reply = self
                .registry
                .send(ObserveMailboxAll::new(self.mailbox.clone(), chunk.to_vec()))
                .await
                .map_err(|source| DriverError::Registry {
                    mailbox: self.mailbox.clone(),
                    source,
                })?;
            match reply {
                Ok(decided) => break decided,
                // The refused append wrote nothing; the same observations (same ids) go to
                // the mailbox restarted from its log.
                Err(e) if e.is_conflict() && attempt <= CONFLICT_RETRIES => {
                    tracing::debug!(mailbox = %self.mailbox, attempt, "append conflict; observations sent again");
                }
                Err(source) => {
                    return Err(DriverError::Mailbox {
                        mailbox: self.mailbox.clone(),
                        source,
                    });
                }
            }
        };
        let mut decisions = Vec::new();
        for (incoming, d) in chunk.iter().zip(decided) {
            self.remember_intents(&d, incoming.correlation);
            decisions.extend(d);
        }
        Ok(decisions)
    }

    /// The intent event `id`: from the decisions this driver saw, else from the journal (the
    /// item index of its CRM row, then the whole mailbox stream).
    async fn intent(&mut self, id: EventId, record: &RecordId) -> Result<KnownIntent, DriverError> {
        if let Some(known) = self.intents.get(&id) {
            return Ok(known.clone());
        }
        let journal = self.journal.clone();
        let stream = StreamId::mailbox(&self.mailbox);
        let key = ItemKey::Crm(record.clone());
        let found =
            tokio::task::spawn_blocking(move || find_intent(journal.as_ref(), &stream, &key, id))
                .await
                .map_err(|e| DriverError::Connector {
                    mailbox: self.mailbox.clone(),
                    reason: format!("the journal read did not complete: {e}"),
                })?
                .map_err(|source| DriverError::Journal {
                    mailbox: self.mailbox.clone(),
                    intent: id,
                    source: Box::new(source),
                })?;
        let known = found.ok_or_else(|| DriverError::IntentMissing {
            mailbox: self.mailbox.clone(),
            intent: id,
        })?;
        self.intents.insert(id, known.clone());
        Ok(known)
    }

    /// A server's Retry-After holds back every mailbox on this credential (R15) for as long as
    /// the domain's policy says ([`credential_hold`], capped at an hour): no connection of it
    /// is handed out before that time.
    fn honour_retry_after(&self, error: &ServerError) {
        let Some((throttle, credential)) = &self.throttle else {
            return;
        };
        let Some(hold) = credential_hold(SystemClock.now(), error) else {
            return;
        };
        let wait_ms = hold.0.max(0);
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms as u64);
        tracing::info!(mailbox = %self.mailbox, account = %credential.account, wait_ms, "the server asked to retry later: the credential's connections wait");
        throttle.retry_after(credential, until);
    }

    /// Runs a connector call on the blocking pool, holding a throttle permit when configured.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Connector) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        let _permit = match &self.throttle {
            Some((throttle, credential)) => Some(throttle.acquire(credential).await),
            None => None,
        };
        let connector = self.connector.clone();
        tokio::task::spawn_blocking(move || {
            // A connector call that panicked leaves the connector usable: its state is on disk.
            let mut guard = connector.lock().unwrap_or_else(PoisonError::into_inner);
            f(guard.as_mut())
        })
        .await
        .map_err(|e| DriverError::Connector {
            mailbox: self.mailbox.clone(),
            reason: e.to_string(),
        })
    }
}

fn is_intent(event: &Event) -> bool {
    matches!(
        event,
        Event::CreateIntent(_)
            | Event::UpdateIntent(_)
            | Event::DeleteIntent(_)
            | Event::CancelIntent(_)
    )
}

/// Looks for the intent `id` in `stream`: through the item index of the intent's row (`key`)
/// first, else by reading the whole stream.
fn find_intent(
    journal: &dyn Journal,
    stream: &StreamId,
    key: &ItemKey,
    id: EventId,
) -> Result<Option<KnownIntent>, EngineError> {
    let known = |envelope: ledgersync_domain::Envelope| -> Result<KnownIntent, EngineError> {
        let correlation = envelope.correlation.unwrap_or(id);
        let stored = Stored::decode(envelope)?;
        Ok(KnownIntent {
            event: stored.event,
            correlation,
        })
    };
    if let Some(envelope) = find_indexed(journal, stream, key, id)? {
        return known(envelope).map(Some);
    }
    let mut from = 1;
    loop {
        let page = journal.read_stream(stream, from, STREAM_PAGE)?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        from = last.seq + 1;
        if let Some(envelope) = page.into_iter().find(|e| e.event_id == id) {
            return known(envelope).map(Some);
        }
    }
}

/// The event `id` of `stream` among the events indexed under `key`.
fn find_indexed(
    journal: &dyn Journal,
    stream: &StreamId,
    key: &ItemKey,
    id: EventId,
) -> Result<Option<ledgersync_domain::Envelope>, ReadError> {
    let positions = journal.positions_for_item(key)?;
    Ok(journal
        .read_positions(&positions)?
        .into_iter()
        .find(|e| e.event_id == id && &e.stream == stream))
}

/// The `item_failed` observation of a connector's item failure.
fn item_failed(workload: Workload, failure: &ItemFailure) -> Event {
    Event::ItemFailed(ItemFailed {
        workload,
        remote: RemoteId::new(failure.item.clone()),
        entity: failure.entity,
        error: ServerError::of_kind(failure.kind, failure.error.clone()),
    })
}

/// A file-name stem for a mailbox id: letters, digits, `-`, `_` and `.` kept, every other
/// byte as `%XX`, so two ids never share a file.
fn file_stem(mailbox: &MailboxId) -> String {
    let mut out = String::new();
    for b in mailbox.to_string().bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes the cursor atomically: a temporary file, fsync, rename over the old one, fsync of
/// the directory.
fn store_cursor(path: &Path, cursor: &Cursor) -> Result<(), DriverError> {
    let err = |source| DriverError::Cursor {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = fs::File::create(&tmp).map_err(err)?;
    file.write_all(cursor.as_str().as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgersync_domain::event::{Basis, DeleteIntent, RecordUpserted, Side};
    use ledgersync_domain::{NewEvent, Timestamp};
    use ledgersync_journal::{ExpectedSeq, JournalOptions};

    fn new_event(event: &Event, rule: bool) -> NewEvent {
        NewEvent {
            event_id: IdGen.next(),
            recorded_at: Timestamp(1),
            occurred_at: Timestamp(1),
            event_type: event.event_type(),
            schema_version: event.schema_version(),
            causation: vec![],
            correlation: None,
            rule: rule.then_some(ledgersync_domain::RuleId(21)),
            payload: event.encode_payload(),
            items: event.item_keys(),
        }
    }

    #[test]
    fn an_intent_is_found_through_the_item_index_and_through_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ledgersync_journal::open(dir.path(), &JournalOptions::default()).unwrap();
        let stream = StreamId::mailbox(&MailboxId::new("m"));
        let delete = Event::DeleteIntent(DeleteIntent {
            basis: Basis::default(),
            record: RecordId::new("r1"),
            remote: None,
            target: Side::MailServer,
            key: "m/r1/delete/v1".into(),
        });
        let mut events: Vec<NewEvent> = (0..3)
            .map(|_| {
                new_event(
                    &Event::RecordUpserted(RecordUpserted {
                        record: ledgersync_domain::records::Record {
                            id: RecordId::new("r0"),
                            owner: ledgersync_domain::UserId::new("u"),
                            version: 1,
                            body: ledgersync_domain::records::RecordBody::Contact(
                                ledgersync_domain::records::Contact {
                                    full_name: "A".into(),
                                    email: "a@example.org".into(),
                                    phone: String::new(),
                                    company: String::new(),
                                    state: ledgersync_domain::records::ContactState::Active,
                                },
                            ),
                        },
                    }),
                    false,
                )
            })
            .collect();
        let intent = new_event(&delete, true);
        let id = intent.event_id;
        events.push(intent);
        journal
            .append(&stream, ExpectedSeq::NoStream, events)
            .unwrap();

        let key = ItemKey::Crm(RecordId::new("r1"));
        assert!(
            find_indexed(journal.as_ref(), &stream, &key, id)
                .unwrap()
                .is_some()
        );
        let found = find_intent(journal.as_ref(), &stream, &key, id)
            .unwrap()
            .unwrap();
        assert_eq!(found.event, delete);
        assert_eq!(
            found.correlation, id,
            "no correlation recorded: the intent's own id"
        );
        // A key that does not index it: found by reading the stream.
        let other = ItemKey::Crm(RecordId::new("elsewhere"));
        let found = find_intent(journal.as_ref(), &stream, &other, id)
            .unwrap()
            .unwrap();
        assert_eq!(found.event, delete);
        // Not in the stream at all.
        assert!(
            find_intent(journal.as_ref(), &stream, &key, IdGen.next())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_cursor_file_is_replaced_atomically_and_names_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.cursor");
        store_cursor(&path, &Cursor::from_text("a\t1\n")).unwrap();
        store_cursor(&path, &Cursor::from_text("b\t2\n")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "b\t2\n");
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["m.cursor".to_string()],
            "no temporary file left"
        );

        assert_eq!(file_stem(&MailboxId::new("mbx-1_a.b")), "mbx-1_a.b");
        assert_eq!(file_stem(&MailboxId::new("a/b")), "a%2Fb");
        assert_ne!(
            file_stem(&MailboxId::new("a/b")),
            file_stem(&MailboxId::new("a%2Fb"))
        );
        assert_eq!(file_stem(&MailboxId::new("..")), "%2E.");
    }
}
