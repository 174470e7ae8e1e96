//! Publishing with confirms, batched: every message of a batch is sent, then the confirms are
//! awaited together. A broken connection is opened again (with backoff, within
//! [`AmqpConfig::publish_timeout`](super::AmqpConfig::publish_timeout)) and the whole batch
//! sent again: at least once.

use super::link::{Link, Shared, declare_queue};
use crate::contract::PublishError;
use crate::message::Queue;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation};
use tokio::time::Instant;

/// One message to publish.
pub(super) struct Outgoing {
    /// The exchange (`""`: the default exchange, which routes by queue name).
    pub(super) exchange: String,
    /// The routing key (the queue's name on the default exchange).
    pub(super) routing_key: String,
    /// The queue it is for (for errors, and to declare it again if it is missing).
    pub(super) queue: Queue,
    /// The message id (for errors).
    pub(super) message_id: String,
    pub(super) body: Vec<u8>,
    pub(super) properties: BasicProperties,
}

enum Failure {
    /// The connection or channel broke: open them again and send the batch again.
    Broken(String),
    /// A message was returned: no queue took it (its queue was deleted).
    Unroutable { index: usize, reason: String },
    /// The broker refused a message.
    Refused(PublishError),
}

/// Publishes `batch` in order and awaits every confirm.
pub(super) async fn publish(shared: &Shared, batch: &[Outgoing]) -> Result<(), PublishError> {
    if batch.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let deadline = started + shared.config.publish_timeout;
    let unavailable = |reason: String| PublishError::Unavailable {
        url: shared.url.clone(),
        waited: started.elapsed(),
        reason,
    };
    let mut delay = shared.config.reconnect_min;
    let mut declared_again = false;
    loop {
        if shared.is_closed() {
            return Err(PublishError::Closed);
        }
        let link = match tokio::time::timeout_at(deadline, shared.link(Some(deadline))).await {
            Ok(Ok(link)) => link,
            Ok(Err(reason)) => return Err(unavailable(reason)),
            Err(_) => {
                return Err(unavailable(
                    "no connection within the publish timeout".into(),
                ));
            }
        };
        match attempt(shared, &link, batch, deadline).await {
            Ok(()) => return Ok(()),
            Err(Failure::Refused(e)) => return Err(e),
            Err(Failure::Unroutable { index, reason }) => {
                let out = &batch[index];
                if declared_again {
                    return Err(PublishError::NotConfirmed {
                        queue: out.queue,
                        message_id: out.message_id.clone(),
                        reason,
                    });
                }
                // Its queue is gone (deleted by hand): declare it again, send the batch again.
                // A passive bus declares nothing: the message is not taken.
                if !shared.declares {
                    return Err(PublishError::NotConfirmed {
                        queue: out.queue,
                        message_id: out.message_id.clone(),
                        reason,
                    });
                }
                declared_again = true;
                tracing::warn!(queue = %out.queue, %reason, "a message came back unroutable; declaring its queue again");
                if let Err((name, e)) =
                    declare_queue(&link.publisher, &shared.config, out.queue).await
                {
                    tracing::warn!(queue = %name, error = %shared.scrub(e), "could not declare the queue again");
                }
            }
            Err(Failure::Broken(reason)) => {
                shared.forget(&link).await;
                if Instant::now() + delay > deadline {
                    return Err(unavailable(reason));
                }
                tracing::warn!(url = %shared.url, error = %reason, retry_in = ?delay, "publishing failed; sending the batch again on a new connection");
                if !shared.sleep(delay).await {
                    return Err(PublishError::Closed);
                }
                delay = (delay * 2).min(shared.config.reconnect_max);
            }
        }
    }
}

async fn attempt(
    shared: &Shared,
    link: &Link,
    batch: &[Outgoing],
    deadline: Instant,
) -> Result<(), Failure> {
    let mut pending = Vec::with_capacity(batch.len());
    for out in batch {
        let confirm = link
            .publisher
            .basic_publish(
                out.exchange.as_str().into(),
                out.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &out.body,
                out.properties.clone(),
            )
            .await
            .map_err(|e| Failure::Broken(shared.scrub(e)))?;
        pending.push(confirm);
    }
    let mut unroutable = None;
    for (index, confirm) in pending.into_iter().enumerate() {
        let out = &batch[index];
        match tokio::time::timeout_at(deadline, confirm).await {
            Err(_) => {
                return Err(Failure::Broken(
                    "the broker did not confirm within the publish timeout".into(),
                ));
            }
            Ok(Err(e)) => return Err(Failure::Broken(shared.scrub(e))),
            Ok(Ok(Confirmation::Ack(None))) => {}
            Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                unroutable.get_or_insert(Failure::Unroutable {
                    index,
                    reason: format!(
                        "returned by the broker: {} {}",
                        returned.reply_code, returned.reply_text
                    ),
                });
            }
            Ok(Ok(Confirmation::Nack(_))) => {
                return Err(Failure::Refused(PublishError::NotConfirmed {
                    queue: out.queue,
                    message_id: out.message_id.clone(),
                    reason: "the broker answered with a negative confirm: it could not store \
                             the message"
                        .into(),
                }));
            }
            Ok(Ok(Confirmation::NotRequested)) => {
                return Err(Failure::Broken(
                    "publisher confirms are off on the publishing channel".into(),
                ));
            }
        }
    }
    unroutable.map_or(Ok(()), Err)
}
