//! The CRM's results of CRM commands, received by the running service (`crm apply` against
//! `serve`): each is recorded in the mailbox of its key through that mailbox's actor, which
//! records it only while its command is still open (`ledgersync_domain::crm::admits`), so two
//! results for one key racing each other are recorded once.

use super::{Service, ServiceError};
use crate::registry::{InspectMailbox, ObserveMailbox};
use ledgersync_domain::crm::{CommandResult, Settlement};
use ledgersync_engine::settle::{Settled, settlement};
use ledgersync_engine::{Incoming, Processed};

impl Service {
    /// Records the CRM's result of a command in the mailbox its key names, as the intent's
    /// outcome, and decides on it (as `Engine::settle` does); a result for a command that is
    /// not open is acknowledged and recorded nowhere. An `Ok` means what it caused is durable.
    pub async fn settle(&self, result: CommandResult) -> Result<Settled, ServiceError> {
        self.settle_as(result, ledgersync_engine::IdGen.next())
            .await
    }

    /// [`Service::settle`], the outcome recorded under the event id `id` (a result taken from
    /// the bus: its message id, so that the same message delivered again is recorded once).
    pub async fn settle_as(
        &self,
        result: CommandResult,
        id: ledgersync_domain::EventId,
    ) -> Result<Settled, ServiceError> {
        let open = self.gate.read().await;
        if !*open {
            return Err(ServiceError::Stopping);
        }
        let mailbox = result.key.mailbox.clone();
        let unavailable = |source| ServiceError::Unavailable {
            what: "registry",
            source,
        };
        let view = self
            .registry
            .send(InspectMailbox::new(mailbox.clone()))
            .await
            .map_err(unavailable)??;
        let event = match settlement(Some(&view.state), &result)? {
            Settlement::Acknowledged(why) => return Ok(Settled::Acknowledged(why)),
            Settlement::Record(event) => *event,
        };
        let incoming = Incoming {
            event: event.clone(),
            id,
            causation: vec![result.key.intent],
            correlation: id,
        };
        let decisions = self
            .registry
            .send(ObserveMailbox::new(mailbox.clone(), incoming))
            .await
            .map_err(unavailable)??;
        self.follow.notify_one();
        if let Some(touched) = self.touched.get() {
            let _ = touched.send(mailbox.clone());
        }
        drop(open);
        Ok(Settled::Recorded {
            mailbox: mailbox.clone(),
            event: Box::new(event),
            processed: Processed {
                org_event: None,
                mailboxes: vec![mailbox],
                decisions,
                already_recorded: None,
            },
        })
    }
}
