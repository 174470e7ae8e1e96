//! The wire format: every released event payload, every version of it (the domain's golden
//! fixtures), goes through the wire and comes back exactly, its body is the JSON the `--json`
//! outputs write, and each way a message can be wrong is its own typed error.

use ledgersync_bus::wire::{self, SCHEMA_VERSION, Schema};
use ledgersync_bus::{BusMessage, DeadLetterReason, WireError, WireLimits, WireMessage};
use ledgersync_domain::{Event, EventId, EventType, MailboxId};
use ledgersync_engine::mailbox::Incoming;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../domain/tests/fixtures")
}

/// Every released payload version, decoded from its golden fixture (`v<N>/<name>.hex`,
/// upcast to the current version), and whether that version is the current one.
fn released_events() -> Vec<(Event, bool)> {
    let catalogue = std::fs::read_to_string(fixtures().join("v1/catalogue.txt")).unwrap();
    let mut events = Vec::new();
    for line in catalogue.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = line.split_whitespace();
        let code: u16 = fields.next().unwrap().parse().unwrap();
        let name = fields.next().unwrap();
        for version in 1u16.. {
            let path = fixtures().join(format!("v{version}/{name}.hex"));
            let Ok(hex_text) = std::fs::read_to_string(&path) else {
                break;
            };
            let clean: String = hex_text.split_whitespace().collect();
            let bytes = hex::decode(clean).unwrap();
            let event = Event::decode(EventType(code), version, &bytes)
                .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
            assert_eq!(event.name(), name);
            let current = event.schema_version() == version;
            events.push((event, current));
        }
    }
    let types: std::collections::BTreeSet<&str> = events.iter().map(|(e, _)| e.name()).collect();
    assert_eq!(types.len(), Event::CATALOGUE.len(), "every released type");
    events
}

#[test]
fn every_released_event_crosses_the_wire_exactly() {
    let limits = WireLimits::default();
    for (event, current) in released_events() {
        // A CRM change travels as its `crm apply` line.
        if let Some(line) = ledgersync_engine::ingress::render_change(&event) {
            let crm = BusMessage::crm(event.clone());
            let w = wire::encode(&crm);
            assert_eq!(wire::decode(&w, &limits).unwrap(), crm, "{}", event.name());
            assert_eq!(w.body, line.as_bytes(), "{}", event.name());
        }
        // Inside a mail observation, the event as every `--json` output writes it: for the
        // current version of a payload, its golden JSON.
        let body = serde_json::to_value(&event).unwrap();
        let fixture_json = current.then(|| {
            let path =
                fixtures().join(format!("v{}/{}.json", event.schema_version(), event.name()));
            serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(path).unwrap())
                .unwrap()
        });
        if let Some(fixture_json) = &fixture_json {
            assert_eq!(&body, fixture_json, "{}", event.name());
        }

        let mail = BusMessage::MailObservation {
            mailbox: MailboxId::new("mbx-ünïcode/1"),
            incoming: Incoming {
                event: event.clone(),
                id: EventId::from_u128(u128::MAX - 7),
                causation: vec![EventId::from_u128(1), EventId::from_u128(2)],
                correlation: EventId::from_u128(3),
            },
        };
        let w = wire::encode(&mail);
        assert_eq!(wire::decode(&w, &limits).unwrap(), mail, "{}", event.name());
        let body: serde_json::Value = serde_json::from_slice(&w.body).unwrap();
        assert_eq!(body["event"], serde_json::to_value(&event).unwrap());
        assert_eq!(body["mailbox"], "mbx-ünïcode/1");
        assert_eq!(body["correlation"], "00000000-0000-0000-0000-000000000003");
    }
}

#[test]
fn the_properties_name_the_schema_its_version_and_the_event_id() {
    let change = released_events()
        .into_iter()
        .map(|(e, _)| e)
        .find(|e| ledgersync_engine::ingress::render_change(e).is_some())
        .expect("a CRM change");
    let m = BusMessage::crm(change);
    let w = wire::encode(&m);
    assert_eq!(w.content_type.as_deref(), Some("application/json"));
    assert_eq!(w.message_id, Some(m.id().to_string()));
    assert_eq!(w.schema.as_deref(), Some(Schema::CrmChange.name()));
    assert_eq!(w.schema_version, Some(SCHEMA_VERSION.to_string()));
    assert_eq!(
        Schema::parse("mail-observation"),
        Some(Schema::MailObservation)
    );
    assert_eq!(Schema::parse("crm_change"), None);
}

/// A valid message, always the same.
fn valid() -> WireMessage {
    let id = EventId::from_u128(0x0190_c0de_0000_7000_8000_0000_0000_0042);
    wire::encode(&BusMessage::MailObservation {
        mailbox: MailboxId::new("mbx-a"),
        incoming: Incoming {
            event: Event::ListingCompleted(ledgersync_domain::event::ListingCompleted {
                workload: ledgersync_domain::event::Workload::Act,
                items: 3,
            }),
            id,
            causation: vec![],
            correlation: id,
        },
    })
}

fn decode(w: &WireMessage) -> Result<BusMessage, WireError> {
    wire::decode(w, &WireLimits { max_body: 1024 })
}

#[test]
fn a_content_type_with_parameters_and_a_textual_version_are_taken() {
    let w = WireMessage {
        content_type: Some("Application/JSON; charset=utf-8".into()),
        schema_version: Some(" 1".into()),
        ..valid()
    };
    assert!(decode(&w).is_ok());
}

#[test]
fn each_fault_is_named_with_its_message_and_where() {
    let id = valid().message_id.unwrap();
    let with_body = |body: &str| WireMessage {
        body: body.as_bytes().to_vec(),
        ..valid()
    };
    // A field the schema does not have.
    let e = decode(&with_body(
        r#"{"mailbox":"m","causation":[],"correlation":"00000000-0000-0000-0000-000000000001","event":{"type":"listing_completed","data":{"workload":"Act","items":3}},"extra":1}"#,
    ))
    .unwrap_err();
    assert!(matches!(&e, WireError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("extra"), "{e}");
    assert!(e.to_string().contains(&id), "{e}");
    // A field of the wrong type, deep in the event, named by its path.
    let e = decode(&with_body(
        r#"{"mailbox":"m","causation":[],"correlation":"00000000-0000-0000-0000-000000000001",
"event":{"type":"listing_completed","data":{"workload":"Act","items":"three"}}}"#,
    ))
    .unwrap_err();
    assert_eq!(e.field(), Some("event.data.items"), "{e}");
    assert_eq!(e.position().map(|(line, _)| line), Some(2), "{e}");
    let reason = DeadLetterReason::from(&e);
    assert_eq!(reason.field.as_deref(), Some("event.data.items"));
    assert_eq!(reason.line, Some(2));
    assert_eq!(reason.reason, e.to_string());
    // A causation that is not a UUID.
    let e = decode(&with_body(
        r#"{"mailbox":"m","causation":["nope"],"correlation":"00000000-0000-0000-0000-000000000001","event":{"type":"listing_completed","data":{"workload":"Act","items":3}}}"#,
    ))
    .unwrap_err();
    assert_eq!(e.field(), Some("causation[0]"), "{e}");
    assert!(e.to_string().contains("`nope` is not a UUID"), "{e}");
    // An event type this build does not know.
    let e = decode(&with_body(
        r#"{"mailbox":"m","causation":[],"correlation":"00000000-0000-0000-0000-000000000001","event":{"type":"telepathy","data":{}}}"#,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("telepathy"), "{e}");
    // Trailing bytes after the body.
    let mut body = valid().body;
    body.extend_from_slice(b" {}");
    let e = decode(&WireMessage { body, ..valid() }).unwrap_err();
    assert!(matches!(e, WireError::Malformed { line: 1, .. }), "{e:?}");
    // Not UTF-8.
    let e = decode(&with_body("\u{0}")).unwrap_err();
    assert!(matches!(e, WireError::Malformed { .. }), "{e:?}");
    // The id, the schema and its version.
    let e = decode(&WireMessage {
        message_id: Some("42".into()),
        ..valid()
    })
    .unwrap_err();
    assert_eq!(e, WireError::BadMessageId { found: "42".into() });
    let e = decode(&WireMessage {
        schema: None,
        ..valid()
    })
    .unwrap_err();
    assert_eq!(
        e,
        WireError::MissingSchema {
            message_id: id.clone()
        }
    );
    let e = decode(&WireMessage {
        schema_version: None,
        ..valid()
    })
    .unwrap_err();
    assert!(
        matches!(
            &e,
            WireError::UnknownSchemaVersion {
                found: None,
                schema: "mail-observation",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("(no header)"), "{e}");
    let e = decode(&WireMessage {
        content_type: None,
        ..valid()
    })
    .unwrap_err();
    assert!(e.to_string().contains("`(none)`"), "{e}");
    // The size is checked before anything else.
    let e = decode(&WireMessage {
        body: vec![b'x'; 1025],
        message_id: None,
        ..valid()
    })
    .unwrap_err();
    assert_eq!(
        e,
        WireError::TooLarge {
            message_id: None,
            size: 1025,
            limit: 1024
        }
    );
    assert!(e.to_string().contains("without a message id"), "{e}");
}

#[test]
fn a_chunk_of_observations_travels_in_one_message_and_comes_back_equal() {
    let limits = WireLimits::default();
    let incoming = |n: u128, items: u32| Incoming {
        event: Event::ListingCompleted(ledgersync_domain::event::ListingCompleted {
            workload: ledgersync_domain::event::Workload::Act,
            items,
        }),
        id: EventId::from_u128(n),
        causation: vec![EventId::from_u128(99)],
        correlation: EventId::from_u128(1),
    };
    let chunk = BusMessage::MailObservations {
        mailbox: MailboxId::new("mbx-a"),
        incomings: vec![incoming(1, 3), incoming(2, 4), incoming(3, 5)],
    };
    let w = wire::encode(&chunk);
    assert_eq!(w.schema.as_deref(), Some("mail-observations"));
    assert_eq!(w.message_id, Some(EventId::from_u128(1).to_string()));
    assert_eq!(wire::decode(&w, &limits).unwrap(), chunk);
    assert_eq!(chunk.incomings().len(), 3);
    let body: serde_json::Value = serde_json::from_slice(&w.body).unwrap();
    assert_eq!(body["observations"][1]["event"]["data"]["items"], 4);

    // The message id must be the first observation's; a chunk holds at least one.
    let mut other = w.clone();
    other.message_id = Some(EventId::from_u128(2).to_string());
    let e = wire::decode(&other, &limits).unwrap_err();
    assert_eq!(e.field(), Some("observations[0].id"), "{e}");
    let mut empty = w.clone();
    empty.body = br#"{"mailbox": "mbx-a", "observations": []}"#.to_vec();
    let e = wire::decode(&empty, &limits).unwrap_err();
    assert_eq!(e.field(), Some("observations"), "{e}");
}
