//! The wire format: how a [`BusMessage`] travels as bytes and properties, the same on every
//! backend (`docs/bus.md`, "Wire format").
//!
//! | property | value |
//! |---|---|
//! | body | JSON (below), at most [`WireLimits::max_body`] bytes (default 1 MiB) |
//! | content type | `application/json` |
//! | message id | the event id the message will be recorded under (hyphenated UUID) |
//! | header [`SCHEMA_HEADER`] (`ledgersync-schema`) | `crm-change`, `mail-observation` or `mail-observations` |
//! | header [`SCHEMA_VERSION_HEADER`] (`ledgersync-schema-version`) | `1` (an integer; the decimal text is accepted too) |
//! | delivery mode | 2, persistent (AMQP) |
//!
//! Bodies, version 1:
//!
//! - `crm-change`: one `crm apply` line (`docs/crm-changes.md`; a CRM command's result is a
//!   line of kind `command_result`, `docs/crm-commands.md`): a JSON object with a string
//!   `"kind"`. The bus checks that much; the organization reads the rest against its state.
//! - `mail-observation`: `{"mailbox": "mbx-a", "causation": ["<uuid>", …],
//!   "correlation": "<uuid>", "event": {"type": …, "data": …}}`; no other field.
//! - `mail-observations`: `{"mailbox": "mbx-a", "observations": [{"id": "<uuid>",
//!   "causation": […], "correlation": "<uuid>", "event": {…}}, …]}`, at least one, the
//!   message id the first one's `id`; no other field.
//!
//! [`decode`] checks, in this order, the size, the message id, the content type, the schema and
//! its version, then the body; the first failure is the [`WireError`], which names the message
//! and, for a body, the field, line and column at fault.

use crate::message::BusMessage;
use ledgersync_domain::{Event, EventId, MailboxId};
use ledgersync_engine::mailbox::Incoming;
use serde::{Deserialize, Serialize};

/// The content type of every message.
pub const CONTENT_TYPE: &str = "application/json";
/// The header naming the body's schema ([`Schema::name`]).
pub const SCHEMA_HEADER: &str = "ledgersync-schema";
/// The header naming the schema's version.
pub const SCHEMA_VERSION_HEADER: &str = "ledgersync-schema-version";
/// The version of both schemas this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The schema of a CRM command on the CRM command queue (header [`SCHEMA_HEADER`]): one
/// object as `ledgersync crm pending --json` prints it; the message id is the intent id.
/// ledgersync publishes these and never reads them.
pub const CRM_COMMAND_SCHEMA: &str = "crm-command";

/// The default size limit of a body: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The schema of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schema {
    /// A `crm apply` line: a CRM change or a CRM command's result.
    CrmChange,
    /// A mail-side observation or intent outcome for a mailbox.
    MailObservation,
    /// Several mail-side observations of one mailbox, in order (a driver's chunk).
    MailObservations,
}

impl Schema {
    /// Its name in the [`SCHEMA_HEADER`].
    pub fn name(self) -> &'static str {
        match self {
            Schema::CrmChange => "crm-change",
            Schema::MailObservation => "mail-observation",
            Schema::MailObservations => "mail-observations",
        }
    }

    /// The schema of a header value, if this build knows it.
    pub fn parse(name: &str) -> Option<Schema> {
        match name {
            "crm-change" => Some(Schema::CrmChange),
            "mail-observation" => Some(Schema::MailObservation),
            "mail-observations" => Some(Schema::MailObservations),
            _ => None,
        }
    }
}

/// A message as it travels: the body and the properties ledgersync reads. Backends map it to
/// their own frames (AMQP: body, `content-type`, `message-id` and two headers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WireMessage {
    /// The body.
    pub body: Vec<u8>,
    /// The content type, if the message has one.
    pub content_type: Option<String>,
    /// The message id, if the message has one.
    pub message_id: Option<String>,
    /// The [`SCHEMA_HEADER`], if present.
    pub schema: Option<String>,
    /// The [`SCHEMA_VERSION_HEADER`] as text (an integer header is written in decimal), if
    /// present.
    pub schema_version: Option<String>,
}

/// Size limits of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// The largest body taken, in bytes: larger messages are refused when published and are a
    /// [`WireError::TooLarge`] when received. Default [`DEFAULT_MAX_BODY`] (1 MiB).
    pub max_body: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Why a received message cannot be decoded. Retrying cannot help: the consumer dead-letters it
/// with this reason ([`crate::DeadLetterReason::from`] keeps the field, line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body is over the size limit; it was not parsed.
    #[error(
        "message {} is {size} bytes, over the bus's limit of {limit} bytes: split it, or raise \
         the limit on every node",
        .message_id.as_deref().unwrap_or("(without a message id)")
    )]
    TooLarge {
        /// The message id, if it has one.
        message_id: Option<String>,
        /// The body's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The message has no message id.
    #[error(
        "a message has no message id: publish it with the event id it is to be recorded under \
         (a UUID) as its message id"
    )]
    MissingMessageId,
    /// The message id is not a UUID.
    #[error(
        "message id `{found}` is not a UUID: publish the message with the event id it is to be \
         recorded under (a hyphenated UUID) as its message id"
    )]
    BadMessageId {
        /// The message id found.
        found: String,
    },
    /// The content type is missing or not JSON.
    #[error(
        "message {message_id} has content type `{}`, not `application/json`: ledgersync \
         messages are JSON (docs/bus.md, Wire format)",
        .found.as_deref().unwrap_or("(none)")
    )]
    ContentType {
        /// The message id.
        message_id: String,
        /// The content type found.
        found: Option<String>,
    },
    /// The schema header is missing.
    #[error(
        "message {message_id} has no `ledgersync-schema` header: set it to `crm-change` or \
         `mail-observation`"
    )]
    MissingSchema {
        /// The message id.
        message_id: String,
    },
    /// The schema header names a schema this build does not know.
    #[error(
        "message {message_id} has the unknown schema `{found}` in its `ledgersync-schema` \
         header; this build reads `crm-change` and `mail-observation`"
    )]
    UnknownSchema {
        /// The message id.
        message_id: String,
        /// The schema found.
        found: String,
    },
    /// The schema version header is missing or names a version this build does not read.
    #[error(
        "message {message_id}: schema `{schema}` version `{}` is not one this build reads \
         (version 1, in the `ledgersync-schema-version` header): publish version 1, or upgrade \
         this node",
        .found.as_deref().unwrap_or("(no header)")
    )]
    UnknownSchemaVersion {
        /// The message id.
        message_id: String,
        /// The schema.
        schema: &'static str,
        /// The version found, if any.
        found: Option<String>,
    },
    /// The body is not JSON.
    #[error("message {message_id} ({schema}) is not JSON: {reason} (line {line}, column {column})")]
    Malformed {
        /// The message id.
        message_id: String,
        /// The schema.
        schema: &'static str,
        /// Where (1-based).
        line: usize,
        /// Where (1-based).
        column: usize,
        /// The parser's words.
        reason: String,
    },
    /// The body is JSON but does not follow its schema.
    #[error(
        "message {message_id} ({schema}) does not follow its schema at `{field}` (line {line}, \
         column {column}): {reason}"
    )]
    Invalid {
        /// The message id.
        message_id: String,
        /// The schema.
        schema: &'static str,
        /// The field at fault, as a path (`data.record.version`); `.` for the body itself.
        field: String,
        /// Where (1-based).
        line: usize,
        /// Where (1-based).
        column: usize,
        /// What is wrong.
        reason: String,
    },
}

impl WireError {
    /// The field at fault, when the body does not follow its schema.
    pub fn field(&self) -> Option<&str> {
        match self {
            WireError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The line and column at fault in the body, when known.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            WireError::Malformed { line, column, .. } | WireError::Invalid { line, column, .. } => {
                Some((*line, *column))
            }
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct MailBodyRef<'a> {
    mailbox: &'a MailboxId,
    causation: &'a [EventId],
    correlation: EventId,
    event: &'a Event,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MailBody {
    mailbox: MailboxId,
    causation: Vec<EventId>,
    correlation: EventId,
    event: Event,
}

#[derive(Serialize)]
struct ObservationRef<'a> {
    id: EventId,
    causation: &'a [EventId],
    correlation: EventId,
    event: &'a Event,
}

#[derive(Serialize)]
struct MailBatchRef<'a> {
    mailbox: &'a MailboxId,
    observations: Vec<ObservationRef<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Observation {
    id: EventId,
    causation: Vec<EventId>,
    correlation: EventId,
    event: Event,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MailBatch {
    mailbox: MailboxId,
    observations: Vec<Observation>,
}

/// The wire form of a message.
pub fn encode(message: &BusMessage) -> WireMessage {
    let (schema, body) = match message {
        BusMessage::CrmChange { line, .. } => (Schema::CrmChange, Ok(line.clone().into_bytes())),
        BusMessage::MailObservation { mailbox, incoming } => (
            Schema::MailObservation,
            serde_json::to_vec(&MailBodyRef {
                mailbox,
                causation: &incoming.causation,
                correlation: incoming.correlation,
                event: &incoming.event,
            }),
        ),
        BusMessage::MailObservations { mailbox, incomings } => (
            Schema::MailObservations,
            serde_json::to_vec(&MailBatchRef {
                mailbox,
                observations: incomings
                    .iter()
                    .map(|i| ObservationRef {
                        id: i.id,
                        causation: &i.causation,
                        correlation: i.correlation,
                        event: &i.event,
                    })
                    .collect(),
            }),
        ),
    };
    WireMessage {
        // Events are plain data (strings, integers, lists, maps with string keys): JSON always
        // takes them.
        body: body.expect("an event always serializes to JSON"),
        content_type: Some(CONTENT_TYPE.into()),
        message_id: Some(message.id().to_string()),
        schema: Some(schema.name().into()),
        schema_version: Some(SCHEMA_VERSION.to_string()),
    }
}

/// The message a wire message carries, or the first thing wrong with it.
pub fn decode(wire: &WireMessage, limits: &WireLimits) -> Result<BusMessage, WireError> {
    if wire.body.len() > limits.max_body {
        return Err(WireError::TooLarge {
            message_id: wire.message_id.clone(),
            size: wire.body.len(),
            limit: limits.max_body,
        });
    }
    let message_id = wire
        .message_id
        .as_deref()
        .ok_or(WireError::MissingMessageId)?;
    let id = EventId::parse(message_id).ok_or_else(|| WireError::BadMessageId {
        found: message_id.into(),
    })?;
    let json = wire.content_type.as_deref().is_some_and(|t| {
        let essence = t.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case(CONTENT_TYPE)
    });
    if !json {
        return Err(WireError::ContentType {
            message_id: message_id.into(),
            found: wire.content_type.clone(),
        });
    }
    let schema_name = wire
        .schema
        .as_deref()
        .ok_or_else(|| WireError::MissingSchema {
            message_id: message_id.into(),
        })?;
    let schema = Schema::parse(schema_name).ok_or_else(|| WireError::UnknownSchema {
        message_id: message_id.into(),
        found: schema_name.into(),
    })?;
    let version = wire.schema_version.as_deref().map(str::trim);
    if version.and_then(|v| v.parse::<u32>().ok()) != Some(SCHEMA_VERSION) {
        return Err(WireError::UnknownSchemaVersion {
            message_id: message_id.into(),
            schema: schema.name(),
            found: wire.schema_version.clone(),
        });
    }
    match schema {
        Schema::CrmChange => {
            let line: serde_json::Value = parse(&wire.body, message_id, schema)?;
            let problem = match &line {
                serde_json::Value::Object(map) => match map.get("kind") {
                    Some(serde_json::Value::String(_)) => None,
                    Some(_) => Some(
                        "`kind` must be a string naming the line's kind (`record_upserted`, \
                         `command_result`, … as in docs/crm-changes.md)",
                    ),
                    None => Some("missing field `kind`: each line names its kind"),
                },
                _ => Some("not a JSON object: a CRM line is one object with a `kind`"),
            };
            if let Some(reason) = problem {
                return Err(WireError::Invalid {
                    message_id: message_id.into(),
                    schema: schema.name(),
                    field: "kind".into(),
                    line: 1,
                    column: 1,
                    reason: reason.into(),
                });
            }
            let line = if wire.body.contains(&b'\n') || wire.body.contains(&b'\r') {
                // One line for the organization's reader: the same object, compact.
                serde_json::to_string(&line).expect("a JSON value always serializes")
            } else {
                String::from_utf8(wire.body.clone()).expect("a JSON text is UTF-8")
            };
            Ok(BusMessage::CrmChange { id, line })
        }
        Schema::MailObservation => {
            let body: MailBody = parse(&wire.body, message_id, schema)?;
            Ok(BusMessage::MailObservation {
                mailbox: body.mailbox,
                incoming: Incoming {
                    event: body.event,
                    id,
                    causation: body.causation,
                    correlation: body.correlation,
                },
            })
        }
        Schema::MailObservations => {
            let body: MailBatch = parse(&wire.body, message_id, schema)?;
            let invalid = |field: &str, reason: &str| WireError::Invalid {
                message_id: message_id.into(),
                schema: schema.name(),
                field: field.into(),
                line: 1,
                column: 1,
                reason: reason.into(),
            };
            match body.observations.first() {
                None => return Err(invalid("observations", "holds no observation")),
                Some(first) if first.id != id => {
                    return Err(invalid(
                        "observations[0].id",
                        "differs from the message id: the message id is the first observation's id",
                    ));
                }
                Some(_) => {}
            }
            Ok(BusMessage::MailObservations {
                mailbox: body.mailbox,
                incomings: body
                    .observations
                    .into_iter()
                    .map(|o| Incoming {
                        event: o.event,
                        id: o.id,
                        causation: o.causation,
                        correlation: o.correlation,
                    })
                    .collect(),
            })
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    message_id: &str,
    schema: Schema,
) -> Result<T, WireError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de)
        .map_err(|e| {
            let field = e.path().to_string();
            body_error(e.into_inner(), Some(field), message_id, schema)
        })
        .and_then(|v| {
            de.end()
                .map(|()| v)
                .map_err(|e| body_error(e, None, message_id, schema))
        })?;
    Ok(value)
}

fn body_error(
    e: serde_json::Error,
    field: Option<String>,
    message_id: &str,
    schema: Schema,
) -> WireError {
    let (line, column) = (e.line(), e.column());
    // serde_json's words end with " at line L column C": the variant says it once.
    let text = e.to_string();
    let reason = match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    match (e.classify(), field) {
        (serde_json::error::Category::Data, Some(field)) => WireError::Invalid {
            message_id: message_id.into(),
            schema: schema.name(),
            field,
            line,
            column,
            reason,
        },
        _ => WireError::Malformed {
            message_id: message_id.into(),
            schema: schema.name(),
            line,
            column,
            reason,
        },
    }
}
