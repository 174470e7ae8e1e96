//! The CRM's answer to a command, and what it becomes in the journal: the intent's outcome,
//! recorded exactly once.

use super::command::{CommandKey, crm_error};
use crate::event::{CommandType, CrmDone, CrmFailed, Event, IntentFailed, IntentSucceeded};
use crate::ids::{RecordId, RemoteId};
use crate::state::MailboxState;
use crate::time::Timestamp;

/// A result line of the CRM: which command (by key) and how it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandResult {
    /// The command's idempotency key.
    pub key: CommandKey,
    /// Done or failed.
    pub status: ResultStatus,
}

/// How a command went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultStatus {
    /// The CRM carried it out.
    Done {
        /// The CRM row: the new row's id for a `track_*` command, the command's row otherwise.
        record: RecordId,
        /// The row version the CRM holds afterwards (for a delete: the version deleted).
        version: u64,
    },
    /// The CRM could not carry it out.
    Failed {
        /// The CRM's explanation, for people.
        reason: String,
        /// The CRM's error code, if it has one.
        code: Option<String>,
        /// Whether the same command may be tried again (R12).
        retryable: bool,
        /// Not before this time, when the CRM asked for a delay.
        retry_after: Option<Timestamp>,
    },
}

/// What a result comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// The outcome to record in the key's mailbox (caused by the intent):
    /// `intent_succeeded` or `intent_failed` with its `crm` part.
    Record(Box<Event>),
    /// Nothing to record: acknowledged, and why.
    Acknowledged(Acknowledged),
}

/// Why a result is acknowledged without being recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledged {
    /// The command was given up before (a failure not retryable, or the retry limit).
    GivenUp,
    /// No command with this key is open in the mailbox: it was settled before (the same
    /// result again), or it was never decided there.
    NotOpen,
}

impl Acknowledged {
    /// The plain-language reason, for `crm apply`.
    pub fn reason(self) -> &'static str {
        match self {
            Acknowledged::GivenUp => {
                "the command was given up before (not retryable, or the retry limit): nothing done"
            }
            Acknowledged::NotOpen => {
                "no open command has this key (its result is already recorded, or it was never \
                 decided): nothing done"
            }
        }
    }
}

/// Why a result is refused: it contradicts the command it names. The shell reports it with its
/// line and [`ResultError::field`]; nothing of the file is applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The key names an intent for the mail server, which a connector carries out.
    #[error(
        "`{key}` is an intent for the mail server, carried out by its connector; only the \
         commands `ledgersync crm pending` lists take results"
    )]
    NotACommand {
        /// The key.
        key: String,
    },
    /// A done result names another row than the command's.
    #[error(
        "the command `{key}` is {command} of row `{expected}`, not `{got}`; give \"record\": \
         \"{expected}\""
    )]
    OtherRow {
        /// The key.
        key: String,
        /// Its type.
        command: CommandType,
        /// The command's row.
        expected: RecordId,
        /// The row the result names.
        got: RecordId,
    },
    /// A done update names a version that is not newer than the one the command was based on.
    #[error(
        "the command `{key}` ({command}) changes row `{record}` from version {known}; the row \
         after it must have a higher version than {known}, not {got}: give the version the CRM \
         holds now"
    )]
    StaleVersion {
        /// The key.
        key: String,
        /// Its type.
        command: CommandType,
        /// The row.
        record: RecordId,
        /// The version the command was based on.
        known: u64,
        /// The version the result names.
        got: u64,
    },
    /// A done track command names a row this mailbox already links to another server item.
    #[error(
        "the command `{key}` ({command}) creates a new row, but row `{record}` is already linked \
         to server item `{remote}` in this mailbox; give the id of the row the CRM created"
    )]
    RowTaken {
        /// The key.
        key: String,
        /// Its type.
        command: CommandType,
        /// The row the result names.
        record: RecordId,
        /// The item it is linked to.
        remote: RemoteId,
    },
}

impl ResultError {
    /// The field of the result line at fault.
    pub fn field(&self) -> &'static str {
        match self {
            ResultError::NotACommand { .. } => "key",
            ResultError::OtherRow { .. } | ResultError::RowTaken { .. } => "record",
            ResultError::StaleVersion { .. } => "version",
        }
    }
}

/// What `result` comes to in the mailbox whose state is `state` (the mailbox its key names):
/// the outcome to record for an open command, an acknowledgement for a command that is not
/// open, or an error for a result that contradicts its command.
pub fn settle(state: &MailboxState, result: &CommandResult) -> Result<Settlement, ResultError> {
    let key = &result.key;
    let Some(intent) = state
        .intents
        .get(&key.intent)
        .filter(|_| state.id.as_ref() == Some(&key.mailbox))
    else {
        return Ok(Settlement::Acknowledged(
            if state.failed_intents.contains_key(&key.intent) {
                Acknowledged::GivenUp
            } else {
                Acknowledged::NotOpen
            },
        ));
    };
    let Some(facts) = &intent.command else {
        return Err(ResultError::NotACommand {
            key: key.to_string(),
        });
    };
    let command = facts.command;
    let event = match &result.status {
        ResultStatus::Done { record, version } => {
            if command.creates() {
                if let Some(link) = state.active_link(record)
                    && record != &intent.record
                    && link.remote != intent.remote
                {
                    return Err(ResultError::RowTaken {
                        key: key.to_string(),
                        command,
                        record: record.clone(),
                        remote: link.remote.clone().unwrap_or_else(|| RemoteId::new("?")),
                    });
                }
            } else if record != &intent.record {
                return Err(ResultError::OtherRow {
                    key: key.to_string(),
                    command,
                    expected: intent.record.clone(),
                    got: record.clone(),
                });
            }
            if matches!(
                command,
                CommandType::UpdateRecord | CommandType::CompleteTask
            ) && *version <= facts.version
            {
                return Err(ResultError::StaleVersion {
                    key: key.to_string(),
                    command,
                    record: record.clone(),
                    known: facts.version,
                    got: *version,
                });
            }
            Event::IntentSucceeded(IntentSucceeded {
                intent: key.intent,
                remote: intent.remote.clone(),
                etag: None,
                crm: Some(CrmDone {
                    command,
                    record: record.clone(),
                    version: *version,
                }),
            })
        }
        ResultStatus::Failed {
            reason,
            code,
            retryable,
            retry_after,
        } => Event::IntentFailed(IntentFailed {
            intent: key.intent,
            error: crm_error(code.as_deref(), reason, *retryable, *retry_after),
            crm: Some(CrmFailed {
                command,
                record: intent.record.clone(),
                retryable: *retryable,
            }),
        }),
    };
    Ok(Settlement::Record(Box::new(event)))
}

/// Whether the mailbox whose state is `state` records `event` now: always, except a CRM
/// command's result (an outcome with a `crm` part) whose command is no longer open — another
/// result for the same key got there first, and this one is acknowledged and recorded nowhere.
/// The shell asks just before it decides, on the state the outcome would be decided on.
pub fn admits(state: &MailboxState, event: &Event) -> bool {
    let open = |intent| {
        state
            .intents
            .get(intent)
            .is_some_and(|i| i.command.is_some())
    };
    match event {
        Event::IntentSucceeded(p) if p.crm.is_some() => open(&p.intent),
        Event::IntentFailed(p) if p.crm.is_some() => open(&p.intent),
        _ => true,
    }
}
