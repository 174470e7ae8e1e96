//! The published formats (`docs/formats.md`) name what the code writes and reads: a JSON Schema
//! file per schema name of the `ledgersync-schema` header, the headers, and the defaults the
//! AsyncAPI document states. `scripts/check-formats` checks the documents themselves.

use ledgersync_bus::events::{
    POSITION_HEADER, STREAM_HEADER, SYNC_EVENT_SCHEMA, SYNC_EVENT_VERSION,
};
use ledgersync_bus::wire::{SCHEMA_HEADER, SCHEMA_VERSION, SCHEMA_VERSION_HEADER, Schema};
use ledgersync_bus::{
    AmqpConfig, DEAD_LETTER_COLUMN, DEAD_LETTER_FIELD, DEAD_LETTER_LINE, DEAD_LETTER_QUEUE,
    DEAD_LETTER_REASON, DEAD_LETTERED_AT, DEFAULT_DELIVERY_LIMIT, DEFAULT_PARTITIONS, WireLimits,
};
use serde_json::Value;
use std::path::PathBuf;

fn docs(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(docs(path)).unwrap_or_else(|e| panic!("docs/{path}: {e}"))
}

fn schema(name: &str) -> Value {
    let file = format!("schemas/{name}.schema.json");
    let schema: Value = serde_json::from_str(&read(&file)).unwrap();
    assert_eq!(
        schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "docs/{file}"
    );
    schema
}

#[test]
fn every_schema_name_has_its_json_schema_and_its_message_in_the_asyncapi_document() {
    let asyncapi = read("asyncapi.yaml");
    // Every schema of the wire format (add a new one here with its file) and the stream's.
    let names = [
        Schema::CrmChange.name(),
        Schema::MailObservation.name(),
        Schema::MailObservations.name(),
        SYNC_EVENT_SCHEMA,
        ledgersync_bus::CRM_COMMAND_SCHEMA,
    ];
    for name in names {
        let published_only = [SYNC_EVENT_SCHEMA, ledgersync_bus::CRM_COMMAND_SCHEMA];
        assert!(
            Schema::parse(name).map(Schema::name) == Some(name) || published_only.contains(&name),
            "{name}"
        );
        schema(name);
        assert!(
            asyncapi.contains(&format!("./schemas/{name}.schema.json")),
            "docs/asyncapi.yaml does not refer to schemas/{name}.schema.json"
        );
        assert!(
            asyncapi.contains(&format!("name: {name}\n"))
                && asyncapi.contains(&format!("const: {name}\n")),
            "docs/asyncapi.yaml has no message {name} with its ledgersync-schema header"
        );
    }
    assert_eq!(SCHEMA_VERSION, 1, "docs/asyncapi.yaml gives version 1");
    assert_eq!(SYNC_EVENT_VERSION, 1, "docs/asyncapi.yaml gives version 1");
}

#[test]
fn the_headers_are_those_the_documents_name() {
    let asyncapi = read("asyncapi.yaml");
    for header in [
        SCHEMA_HEADER,
        SCHEMA_VERSION_HEADER,
        POSITION_HEADER,
        STREAM_HEADER,
    ] {
        assert!(
            asyncapi.contains(&format!("{header}:")),
            "docs/asyncapi.yaml does not name the header {header}"
        );
    }
    let dead = schema("dead-letter-headers");
    for header in [
        DEAD_LETTER_REASON,
        DEAD_LETTER_FIELD,
        DEAD_LETTER_LINE,
        DEAD_LETTER_COLUMN,
        DEAD_LETTER_QUEUE,
        DEAD_LETTERED_AT,
    ] {
        assert!(
            dead["properties"].get(header).is_some(),
            "docs/schemas/dead-letter-headers.schema.json does not name {header}"
        );
    }
}

#[test]
fn the_defaults_the_asyncapi_document_states_are_the_codes() {
    let asyncapi = read("asyncapi.yaml");
    let config = AmqpConfig::default();
    assert_eq!(config.prefix, "ledgersync.");
    assert!(asyncapi.contains("address: ledgersync.crm\n"));
    assert!(asyncapi.contains(&format!("x-delivery-limit: {DEFAULT_DELIVERY_LIMIT}\n")));
    assert!(asyncapi.contains(&format!("({} by default)", DEFAULT_PARTITIONS - 1)));
    let max_body = WireLimits::default().max_body;
    assert_eq!(max_body, 1 << 20);
    assert!(asyncapi.contains("at most 1 MiB (1,048,576 bytes) by default"));
}
