//! Schema versions of the payloads and the upcasters of their older versions.
//!
//! Every payload type starts at schema version 1. A type whose payload grew has a newer current
//! version, listed in [`schema_version_of`]; its older versions keep their struct here (under a
//! `V<n>` name, never changed) and an upcaster in [`upcast`], so every event ever written still
//! decodes (`docs/event-format.md`, "Versioning rules").
//!
//! | type               | version | since this version                                      |
//! |--------------------|---------|---------------------------------------------------------|
//! | `intent_succeeded` | 2       | `crm`: the row the CRM holds after a CRM command        |
//! | `intent_failed`    | 2       | `crm`: the command type, its row, whether it is retried |

use super::{
    CrmDone, CrmFailed, DecodeError, Event, EventId, EventType, IntentFailed, IntentSucceeded,
    RemoteId, ServerError, decode_exact,
};
use serde::{Deserialize, Serialize};

/// The type code of `intent_succeeded`.
const INTENT_SUCCEEDED: u16 = 40;
/// The type code of `intent_failed`.
const INTENT_FAILED: u16 = 41;

/// The current schema version of the payload type `event_type`: the version events of that
/// type are written with.
pub fn schema_version_of(event_type: EventType) -> u16 {
    match event_type.0 {
        INTENT_SUCCEEDED | INTENT_FAILED => 2,
        _ => super::FIRST_SCHEMA_VERSION,
    }
}

/// `intent_succeeded` as schema version 1 wrote it: a connector's outcome only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentSucceededV1 {
    /// The intent event.
    pub intent: EventId,
    /// Server id of the created item.
    pub remote: Option<RemoteId>,
    /// New server version tag.
    pub etag: Option<String>,
}

impl From<IntentSucceededV1> for IntentSucceeded {
    fn from(v1: IntentSucceededV1) -> Self {
        IntentSucceeded {
            intent: v1.intent,
            remote: v1.remote,
            etag: v1.etag,
            crm: None::<CrmDone>,
        }
    }
}

/// `intent_failed` as schema version 1 wrote it: a connector's outcome only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentFailedV1 {
    /// The intent event.
    pub intent: EventId,
    /// What the server said.
    pub error: ServerError,
}

impl From<IntentFailedV1> for IntentFailed {
    fn from(v1: IntentFailedV1) -> Self {
        IntentFailed {
            intent: v1.intent,
            error: v1.error,
            crm: None::<CrmFailed>,
        }
    }
}

/// Decodes an older schema version of `event_type` into the current event, or `None` when the
/// type has no such version.
pub fn upcast(
    event_type: EventType,
    schema_version: u16,
    bytes: &[u8],
) -> Option<Result<Event, DecodeError>> {
    Some(match (event_type.0, schema_version) {
        (INTENT_SUCCEEDED, 1) => decode_exact::<IntentSucceededV1>(bytes)
            .map(|v1| Event::IntentSucceeded(IntentSucceeded::from(v1))),
        (INTENT_FAILED, 1) => decode_exact::<IntentFailedV1>(bytes)
            .map(|v1| Event::IntentFailed(IntentFailed::from(v1))),
        _ => return None,
    })
}
