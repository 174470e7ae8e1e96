//! The CRM's results of CRM commands, recorded in the mailbox of their key as the intent's
//! outcome (`docs/crm-commands.md`). The rules are the domain's (`ledgersync_domain::crm`):
//! what a result comes to, and that it is recorded once.

use crate::engine::{Engine, Processed};
use crate::error::EngineError;
use ledgersync_domain::crm::{Acknowledged, CommandResult, Settlement, settle};
use ledgersync_domain::{Event, MailboxId, MailboxState};

/// What a result came to.
#[derive(Clone, Debug)]
pub enum Settled {
    /// Recorded in `mailbox` as the intent's outcome (`event`), with what it decided.
    Recorded {
        /// The mailbox of the key.
        mailbox: MailboxId,
        /// The outcome recorded.
        event: Box<Event>,
        /// Its decisions.
        processed: Processed,
    },
    /// Acknowledged and recorded nowhere: the command was not open.
    Acknowledged(Acknowledged),
}

/// What `result` comes to in the mailbox whose state is `state` (`None`: the key names a
/// mailbox with no stream yet, so no command): the domain's settlement, its refusal as an
/// error naming the field at fault.
pub fn settlement(
    state: Option<&MailboxState>,
    result: &CommandResult,
) -> Result<Settlement, EngineError> {
    let Some(state) = state else {
        return Ok(Settlement::Acknowledged(Acknowledged::NotOpen));
    };
    settle(state, result).map_err(|e| EngineError::InvalidField {
        field: e.field().to_string(),
        message: e.to_string(),
    })
}

impl Engine {
    /// Records the CRM's result of a command in the mailbox its key names, as the intent's
    /// outcome, and decides on it; a result for a command that is not open is acknowledged and
    /// recorded nowhere. A result that contradicts its command is refused
    /// ([`EngineError::InvalidField`], nothing recorded).
    pub fn settle(&mut self, result: &CommandResult) -> Result<Settled, EngineError> {
        let mailbox = result.key.mailbox.clone();
        if !self.org().mailboxes.contains_key(&mailbox) {
            return Err(EngineError::UnknownMailbox(mailbox));
        }
        match settlement(self.mailbox(&mailbox), result)? {
            Settlement::Acknowledged(why) => Ok(Settled::Acknowledged(why)),
            Settlement::Record(event) => {
                let processed = self.observe(&mailbox, (*event).clone())?;
                Ok(Settled::Recorded {
                    mailbox,
                    event,
                    processed,
                })
            }
        }
    }
}
