//! CRM commands out on the bus: the open CRM commands of the mailboxes (intents that write to
//! the CRM: R18, R33, R36/R43/R46, R44, R48; `docs/crm-commands.md`) published to the CRM
//! command queue for the CRM's adapter, which answers each with a `command_result` line on the
//! CRM queue ([`super::bus`]).
//!
//! The mailbox state is the outbox: a command is open from its decision until a result closes
//! it (or R12 gives it up). The dispatcher looks at a mailbox when something reached it (an
//! observation consumed from its partition, a CRM change routed to it, a result recorded) and
//! when the retry time of one of its failed commands has come (checked every [`RESCAN`]; a
//! mailbox whose commands all wait for the adapter is not looked at again), and publishes each open
//! command that is due and that it has not published at its current attempt count: a command
//! once, and again after each retryable failure once its retry time has come. After a restart
//! every open due command is published again (at least once): the adapter carries a command
//! out at most once by its key, and a second result for a closed command is acknowledged and
//! recorded nowhere.

use crate::registry::{InspectMailbox, Registry};
use crate::sink::Publish;
use actix::Addr;
use ledgersync_bus::{CRM_COMMAND_SCHEMA, WireMessage, wire::CONTENT_TYPE};
use ledgersync_domain::MailboxId;
use ledgersync_domain::Timestamp;
use ledgersync_domain::crm::{CommandKey, commands};
use ledgersync_engine::Clock;
use ledgersync_engine::command_json::command_json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How often the dispatcher checks whether a failed command's retry time has come.
pub const RESCAN: Duration = Duration::from_secs(1);

/// Publishes the open CRM commands (module doc) until `stopped`.
pub(super) async fn dispatch_commands(
    registry: Addr<Registry>,
    clock: Arc<dyn Clock>,
    publish: Arc<dyn Publish>,
    mut touched: mpsc::UnboundedReceiver<MailboxId>,
    initial: Vec<MailboxId>,
    mut stopped: watch::Receiver<bool>,
) {
    // Command key → the attempt count it was last published at.
    let mut published: HashMap<CommandKey, u32> = HashMap::new();
    // Mailboxes with open commands waiting for a retry time (the earliest), or whose publish
    // failed (now): looked at again then.
    let mut retry: BTreeMap<MailboxId, Timestamp> = BTreeMap::new();
    let mut due: BTreeSet<MailboxId> = initial.into_iter().collect();
    loop {
        if due.is_empty() {
            tokio::select! {
                m = touched.recv() => match m {
                    Some(m) => { due.insert(m); }
                    None => return,
                },
                () = tokio::time::sleep(RESCAN) => {
                    let now = clock.now();
                    due.extend(retry.iter().filter(|(_, at)| **at <= now).map(|(m, _)| m.clone()));
                }
                _ = stopped.changed() => return,
            }
        }
        while let Ok(m) = touched.try_recv() {
            due.insert(m);
        }
        for mailbox in std::mem::take(&mut due) {
            retry.remove(&mailbox);
            let view = match registry.send(InspectMailbox::new(mailbox.clone())).await {
                Ok(Ok(view)) => view,
                Ok(Err(e)) => {
                    tracing::warn!(%mailbox, error = %e, "could not read the mailbox for its CRM commands");
                    retry.insert(mailbox, clock.now());
                    continue;
                }
                Err(_) => return,
            };
            let listed = commands(&view.state, view.now);
            published
                .retain(|key, _| key.mailbox != mailbox || listed.iter().any(|c| &c.key == key));
            if let Some(at) = listed
                .iter()
                .filter(|c| !c.due)
                .filter_map(|c| c.retry_at)
                .min()
            {
                retry.insert(mailbox.clone(), at);
            }
            let fresh: Vec<_> = listed
                .iter()
                .filter(|c| c.due && published.get(&c.key) != Some(&c.attempts))
                .collect();
            if fresh.is_empty() {
                continue;
            }
            let wires = fresh
                .iter()
                .map(|c| WireMessage {
                    body: serde_json::to_vec(&command_json(c))
                        .expect("a command always serializes to JSON"),
                    content_type: Some(CONTENT_TYPE.into()),
                    message_id: Some(c.key.intent.to_string()),
                    schema: Some(CRM_COMMAND_SCHEMA.into()),
                    schema_version: Some("1".into()),
                })
                .collect();
            match publish.publish_commands(wires).await {
                Ok(()) => {
                    for c in fresh {
                        tracing::info!(key = %c.key, command = c.command.name(), attempts = c.attempts, "CRM command published");
                        published.insert(c.key.clone(), c.attempts);
                    }
                }
                Err(e) => {
                    tracing::warn!(%mailbox, error = %e, "CRM commands not published; trying again");
                    retry.insert(mailbox, clock.now());
                }
            }
        }
    }
}
