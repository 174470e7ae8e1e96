//! The command model: what a CRM-targeted intent asks of the CRM, and its idempotency key.

use crate::email::resolve::AutoCreate;
use crate::event::{CommandType, RemoteFields, ServerError, TrackedBy};
use crate::ids::{EventId, MailboxId, RecordId, RemoteId};
use crate::records::{Entity, RecordRef};
use crate::rules::RuleId;
use crate::state::MailboxState;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The idempotency key of a CRM command: the mailbox and the event id of the intent, written
/// `<mailbox>/<intent id>` (`mbx-jayne/01934f6a-8c00-7000-8000-000000000028`). Derived from
/// the intent alone, it is the same on every listing and every retry, and names one command
/// in the whole journal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandKey {
    /// The mailbox whose decision the command is.
    pub mailbox: MailboxId,
    /// The intent's event id.
    pub intent: EventId,
}

impl fmt::Display for CommandKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.mailbox, self.intent)
    }
}

/// Why a text is not a command key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No `/` separates a mailbox from an intent id.
    #[error(
        "`{key}` is not a command key: expected <mailbox>/<intent id>, e.g. \
         mbx-jayne/01934f6a-8c00-7000-8000-000000000028, as `ledgersync crm pending` prints it"
    )]
    Shape {
        /// The text.
        key: String,
    },
    /// The part after the last `/` is not a UUID.
    #[error(
        "`{key}` does not end in an intent id: `{id}` is not a UUID (copy the key as \
         `ledgersync crm pending` prints it)"
    )]
    Intent {
        /// The text.
        key: String,
        /// The part that should be the id.
        id: String,
    },
}

impl CommandKey {
    /// The key of intent `intent` of `mailbox`.
    pub fn new(mailbox: MailboxId, intent: EventId) -> Self {
        Self { mailbox, intent }
    }

    /// Reads a key written by [`fmt::Display`]: the mailbox is everything before the last `/`
    /// (a mailbox id may itself hold one), the intent id the UUID after it.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let Some((mailbox, id)) = text.rsplit_once('/') else {
            return Err(KeyError::Shape { key: text.into() });
        };
        if mailbox.trim().is_empty() {
            return Err(KeyError::Shape { key: text.into() });
        }
        let intent = EventId::parse(id).ok_or_else(|| KeyError::Intent {
            key: text.into(),
            id: id.into(),
        })?;
        Ok(Self::new(MailboxId::new(mailbox), intent))
    }
}

/// What the state keeps of an intent that writes to the CRM, fixed when it was decided: the
/// command it leaves as, and the mail-side fields as they were then (a retry sends the same).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommand {
    /// The command type.
    pub command: CommandType,
    /// The CRM table.
    pub entity: Entity,
    /// Subject or name.
    pub title: String,
    /// The CRM row version the command is based on (0 for a `track_*` command: no row yet).
    pub version: u64,
    /// The mail-side fields of the item (absent for a delete: the item is gone).
    pub fields: Option<RemoteFields>,
    /// R48: the actual start a task created from the mail server gets (when it was tracked).
    pub actual_start: Option<Timestamp>,
    /// For a `track_email` command: the email and what was decided about it.
    pub email: Option<EmailCommand>,
}

/// What a `track_email` command carries: the email's headers (from its `email_received`) and
/// what its `email_accepted` decided, so that the CRM can create the email activity without
/// asking anything else. Fixed when the command is decided; every retry sends the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailCommand {
    /// The normalised Message-ID (no angle brackets, lower case): the CRM creates at most one
    /// activity per Message-ID.
    pub message_id: String,
    /// Subject.
    pub subject: String,
    /// The sender's address.
    pub from: String,
    /// To addresses.
    pub to: Vec<String>,
    /// Cc addresses.
    pub cc: Vec<String>,
    /// When the mail server received it.
    pub received: Timestamp,
    /// The user or queue that accepted it (R52), or the mailbox's user when tracked by hand
    /// (R56).
    pub accepting: RecordId,
    /// The mailbox whose cycle found it.
    pub receiving_mailbox: MailboxId,
    /// The row it is regarding (R61, R72), with its table.
    pub regarding: Option<RecordRef>,
    /// The activity it correlated with (R60).
    pub correlated: Option<RecordId>,
    /// How it correlated (In-Reply-To, token, conversation, smart match), or how it was
    /// tracked by hand.
    pub correlation: Option<TrackedBy>,
    /// Whether the correlated email is its parent activity (R61).
    pub parent: bool,
    /// The sender's row (R66).
    pub sender: Option<RecordId>,
    /// The rows of To, Cc and Bcc (R67).
    pub recipients: Vec<RecordId>,
    /// The row to create for an unresolved sender (R68).
    pub create: Option<AutoCreate>,
    /// The email's owner (R69).
    pub owner: Option<RecordId>,
}

impl EmailCommand {
    /// The row id ledgersync proposes for the email activity of the Message-ID `message_id`:
    /// `email-<16 hex digits>` of a stable hash (64-bit FNV-1a) of the normalised Message-ID,
    /// so that every mailbox that tracks the same message proposes the same row. An email
    /// without a Message-ID proposes one from its server item `remote` instead.
    pub fn proposed_record(message_id: &str, remote: &RemoteId) -> RecordId {
        let key = crate::email::correlate::message_id_key(message_id);
        let hashed = if key.is_empty() {
            format!("remote:{remote}")
        } else {
            key
        };
        RecordId(format!(
            "email-{:016x}",
            crate::email::smart_match::fnv1a(&hashed)
        ))
    }
}

/// One open CRM command, as `ledgersync crm pending` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrmCommand {
    /// The idempotency key; a result names it.
    pub key: CommandKey,
    /// The command type.
    pub command: CommandType,
    /// The rule that decided it.
    pub rule: RuleId,
    /// The CRM table.
    pub entity: Entity,
    /// The CRM row. For a `track_*` command, the id ledgersync proposes for the new row (the
    /// CRM may create it under another id and name that id in its result).
    pub record: RecordId,
    /// The row version the command is based on; `None` for a `track_*` command.
    pub version: Option<u64>,
    /// The mail-server item the command comes from.
    pub remote: Option<RemoteId>,
    /// Subject or name.
    pub title: String,
    /// The mail-side fields as decided (absent for a delete).
    pub fields: Option<RemoteFields>,
    /// R48: the actual start of a task created from the mail server.
    pub actual_start: Option<Timestamp>,
    /// For a `track_email` command: the email and what was decided about it.
    pub email: Option<EmailCommand>,
    /// Failed attempts so far (R12).
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<ServerError>,
    /// Not to be tried again before this time (a retryable failure, R11, R12).
    pub retry_at: Option<Timestamp>,
    /// Whether it may be carried out at `now` (never failed, or its retry time has come).
    pub due: bool,
}

/// Every open CRM command of a mailbox at `now`, in the order decided (event ids are time
/// ordered): the pending intents that write to the CRM. Intents given up are not listed.
pub fn commands(state: &MailboxState, now: Timestamp) -> Vec<CrmCommand> {
    let Some(mailbox) = state.id.clone() else {
        return Vec::new();
    };
    state
        .intents
        .iter()
        .filter_map(|(id, intent)| {
            let facts = intent.command.as_ref()?;
            Some(CrmCommand {
                key: CommandKey::new(mailbox.clone(), *id),
                command: facts.command,
                rule: facts.command.rule(facts.entity),
                entity: facts.entity,
                record: intent.record.clone(),
                version: (!facts.command.creates()).then_some(facts.version),
                remote: intent.remote.clone(),
                title: facts.title.clone(),
                fields: facts.fields.clone(),
                actual_start: facts.actual_start,
                email: facts.email.clone(),
                attempts: intent.failures,
                last_error: intent.last_error.clone(),
                retry_at: intent.retry_at.filter(|at| *at > now),
                due: intent.due(now),
            })
        })
        .collect()
}

/// The error a failed result is recorded with: the CRM's own code when it gave one, else
/// `crm_retryable` or `crm_refused` (both read as `ErrorKind::Unknown`: the class comes from
/// the CRM's `retryable`, never from the code).
pub(crate) fn crm_error(
    code: Option<&str>,
    reason: &str,
    retryable: bool,
    retry_after: Option<Timestamp>,
) -> ServerError {
    let code = match code {
        Some(c) if !c.trim().is_empty() => c.to_string(),
        _ if retryable => "crm_retryable".into(),
        _ => "crm_refused".into(),
    };
    ServerError {
        code,
        message: reason.to_string(),
        retry_after,
    }
}
