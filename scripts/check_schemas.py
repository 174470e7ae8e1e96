#!/usr/bin/env python3
"""Checks the JSON Schemas of docs/schemas/ against real samples (run by scripts/check-formats).

- every schema file is a valid JSON Schema (draft 2020-12) and every `$ref` in it resolves;
- every example line of docs/crm-changes.md and docs/crm-commands.md (their ```json blocks:
  change lines, `command_result` lines, `crm pending --json` lines) follows its schema;
- every golden event fixture of crates/domain/tests/fixtures/ that is a mail observation or an
  outcome, wrapped as a mail-observation body, follows mail-observation.schema.json, and every
  other fixture is refused by it; the types it admits are exactly the catalogue's;
- sync events built from the envelope fixture and from every fixture follow sync-event.schema.json;
- invalid samples (an unknown kind, a missing required field, a wrong type, ...) are refused, so
  the check can fail.

Exit code 0 when everything holds, 1 otherwise, with one line per fault.
"""

import copy
import json
import pathlib
import re
import sys

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
FIXTURES = ROOT / "crates" / "domain" / "tests" / "fixtures"

# The message schemas of the AMQP interface (header ledgersync-schema) and their files.
WIRE_SCHEMAS = {
    "crm-change": "crm-change.schema.json",
    "mail-observation": "mail-observation.schema.json",
    "mail-observations": "mail-observations.schema.json",
    "crm-command": "crm-command.schema.json",
    "sync-event": "sync-event.schema.json",
}

faults = []
checked = 0


def fault(text):
    faults.append(text)


# --- the schemas themselves -------------------------------------------------------------------

schemas = {}
for path in sorted(SCHEMAS.glob("*.schema.json")):
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        fault(f"{path.relative_to(ROOT)}: not JSON: {e}")
        continue
    if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
        fault(f"{path.relative_to(ROOT)}: $schema is not draft 2020-12")
    expected_id = f"https://example.invalid/ledgersync/schemas/{path.name}"
    if schema.get("$id") != expected_id:
        fault(f"{path.relative_to(ROOT)}: $id should be {expected_id}")
    try:
        Draft202012Validator.check_schema(schema)
    except Exception as e:  # SchemaError
        fault(f"{path.relative_to(ROOT)}: not a valid JSON Schema: {e}")
        continue
    schemas[path.name] = schema

registry = Registry().with_resources(
    (s["$id"], Resource.from_contents(s)) for s in schemas.values() if "$id" in s
)


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


for name, schema in schemas.items():
    resolver = registry.resolver(base_uri=schema["$id"])
    for ref in refs(schema):
        try:
            resolver.lookup(ref)
        except Exception as e:
            fault(f"docs/schemas/{name}: $ref {ref!r} does not resolve: {e}")

for wire, file in WIRE_SCHEMAS.items():
    if file not in schemas:
        fault(f"docs/schemas/{file} (schema {wire}) is missing")
if faults:
    print("\n".join(faults), file=sys.stderr)
    sys.exit(1)

validators = {
    name: Draft202012Validator(s, registry=registry, format_checker=FormatChecker())
    for name, s in schemas.items()
}


def explain(error):
    """The error worth showing: within a oneOf or anyOf, the deepest error of its branches (the
    branch whose "kind", "command" or "type" matched fails deeper than the others)."""
    while error.context:
        branches = {}
        for e in error.context:
            branches.setdefault(e.relative_schema_path[0], []).append(e)
        fitting = [errs for errs in branches.values() if not any(e.validator == "const" for e in errs)]
        error = max(fitting[0] if len(fitting) == 1 else error.context, key=lambda e: len(e.absolute_path))
    return error


def errors(schema_file, instance):
    return sorted(validators[schema_file].iter_errors(instance), key=lambda e: list(e.path))


def expect_valid(schema_file, instance, where):
    global checked
    checked += 1
    best = best_match(validators[schema_file].iter_errors(instance))
    if best is not None:
        best = explain(best)
        path = "/".join(str(p) for p in best.absolute_path) or "(body)"
        fault(f"{where}: does not follow {schema_file} at {path}: {best.message[:300]}")


def expect_invalid(schema_file, instance, where):
    global checked
    checked += 1
    if not errors(schema_file, instance):
        fault(f"{where}: an invalid sample is taken by {schema_file}; the schema is too loose")


# --- the example lines of the documentation ---------------------------------------------------


def json_lines(doc):
    """Every line of every ```json block of a Markdown file, with its line number."""
    inside = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip().startswith("```"):
            inside = line.strip() == "```json" if not inside else False
            continue
        if inside and line.strip():
            yield number, line


doc_samples = {"crm-change": [], "crm-command": []}
for doc in ("docs/crm-changes.md", "docs/crm-commands.md"):
    for number, line in json_lines(ROOT / doc):
        where = f"{doc}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            fault(f"{where}: an example line is not JSON: {e}")
            continue
        if "kind" in value:
            expect_valid("crm-change.schema.json", value, where)
            doc_samples["crm-change"].append(value)
        elif "command" in value:
            expect_valid("crm-command.schema.json", value, where)
            # the per-command schema too, by name
            expect_valid(f"crm-command.{value['command']}.schema.json", value, where)
            doc_samples["crm-command"].append(value)
        else:
            fault(f"{where}: an example line with neither \"kind\" nor \"command\"")

kinds = {v["kind"] for v in doc_samples["crm-change"]}
declared = {
    b["properties"]["kind"]["const"] for b in schemas["crm-change.schema.json"]["oneOf"]
}
if kinds != declared:
    fault(
        f"docs/crm-changes.md and docs/crm-commands.md give examples of the kinds {sorted(kinds)}, "
        f"crm-change.schema.json declares {sorted(declared)}"
    )
commands = {v["command"] for v in doc_samples["crm-command"]}
declared = set(schemas["crm-command.schema.json"]["properties"]["command"]["enum"])
if commands != declared:
    fault(f"docs/crm-commands.md gives examples of {sorted(commands)}, crm-command.schema.json declares {sorted(declared)}")
for c in declared:
    if f"crm-command.{c}.schema.json" not in schemas:
        fault(f"docs/schemas/crm-command.{c}.schema.json is missing")
if not doc_samples["crm-change"] or not doc_samples["crm-command"]:
    fault("no example lines found in docs/crm-changes.md and docs/crm-commands.md")

# --- the golden event fixtures ----------------------------------------------------------------

catalogue = {}  # name -> (code, class)
for line in (FIXTURES / "v1" / "catalogue.txt").read_text(encoding="utf-8").splitlines():
    if line.strip() and not line.startswith("#"):
        code, name, cls = line.split()
        catalogue[name] = (int(code), cls)
mail_types = {n for n, (_, cls) in catalogue.items() if cls in ("MailObservation", "Outcome")}

admitted = set()
for branch in schemas["mail-observation.schema.json"]["$defs"]["event"]["oneOf"]:
    admitted.add(branch["properties"]["type"]["const"])
if admitted != mail_types:
    fault(
        "mail-observation.schema.json admits the event types "
        f"{sorted(admitted)}, the catalogue's mail observations and outcomes are {sorted(mail_types)}"
    )
sync_types = set(schemas["sync-event.schema.json"]["properties"]["event_type"]["enum"])
if sync_types != set(catalogue):
    fault(f"sync-event.schema.json's event_type enum differs from the catalogue: {sorted(sync_types ^ set(catalogue))}")

MAILBOX = "mb-alice"
CAUSATION = ["01934f6a-8c00-7000-8000-000000000026"]
CORRELATION = "01934f6a-8c00-7000-8000-000000000026"


def observation(event):
    return {"mailbox": MAILBOX, "causation": CAUSATION, "correlation": CORRELATION, "event": event}


def observations(*events):
    return {
        "mailbox": MAILBOX,
        "observations": [
            {"id": f"01934f6a-8c00-7000-8000-{n:012x}", "causation": CAUSATION, "correlation": CORRELATION, "event": e}
            for n, e in enumerate(events)
        ],
    }


envelope = json.loads((FIXTURES / "envelope" / "v1.json").read_text(encoding="utf-8"))
code_names = {code: name for name, (code, _) in catalogue.items()}


def sync_event(event, schema_version=1, rule=None):
    return {
        "position": envelope["position"],
        "stream": envelope["stream"],
        "seq": envelope["seq"],
        "event_id": envelope["event_id"],
        "recorded_at": envelope["recorded_at"],
        "occurred_at": envelope["occurred_at"],
        "event_type": event["type"],
        "schema_version": schema_version,
        "causation": envelope["causation"],
        "correlation": envelope["correlation"],
        "rule": rule,
        "payload": event,
    }


# The envelope fixture as `events --json` prints it (crates/engine/src/log.rs, event_json).
expect_valid(
    "sync-event.schema.json",
    sync_event(
        envelope["decoded_payload"],
        envelope["schema_version"],
        f"R{envelope['rule']}" if envelope["rule"] is not None else None,
    )
    | {"event_type": code_names[envelope["event_type"]]},
    "crates/domain/tests/fixtures/envelope/v1.json as a sync-event",
)

fixtures = sorted(FIXTURES.glob("v*/*.json")) + sorted(FIXTURES.glob("v*/variants/*.json"))
seen_mail = set()
for path in fixtures:
    where = str(path.relative_to(ROOT))
    event = json.loads(path.read_text(encoding="utf-8"))
    if set(event) != {"type", "data"}:
        fault(f"{where}: a fixture that is not {{\"type\", \"data\"}}")
        continue
    version = int(path.relative_to(FIXTURES).parts[0][1:])
    expect_valid("sync-event.schema.json", sync_event(event, version), f"{where} as a sync-event")
    if event["type"] in mail_types:
        seen_mail.add(event["type"])
        expect_valid("mail-observation.schema.json", observation(event), f"{where} as a mail-observation")
        expect_valid("mail-observations.schema.json", observations(event, event), f"{where} twice as mail-observations")
    else:
        expect_invalid("mail-observation.schema.json", observation(event), f"{where} ({event['type']}) as a mail-observation")
        expect_invalid("mail-observations.schema.json", observations(event), f"{where} ({event['type']}) in mail-observations")
expect_invalid("mail-observations.schema.json", {"mailbox": MAILBOX, "observations": []}, "mail-observations with no observation")
if seen_mail != mail_types:
    fault(f"no fixture of the mail-observation types {sorted(mail_types - seen_mail)}")

# --- invalid samples are refused --------------------------------------------------------------


def changed(value, path, new=None, delete=False):
    """A deep copy of value with the field at path (a list of keys) replaced or removed."""
    out = copy.deepcopy(value)
    node = out
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = new
    return out


change = next(v for v in doc_samples["crm-change"] if v["kind"] == "record_upserted")
result = next(v for v in doc_samples["crm-change"] if v["kind"] == "command_result" and v["status"] == "done")
failed = next(v for v in doc_samples["crm-change"] if v["kind"] == "command_result" and v["status"] == "failed")
command = next(v for v in doc_samples["crm-command"] if v["command"] == "track_appointment")
email = next(v for v in doc_samples["crm-command"] if v["command"] == "track_email")
seen = observation(json.loads((FIXTURES / "v1" / "item_seen.json").read_text(encoding="utf-8")))
event = sync_event(json.loads((FIXTURES / "v1" / "item_tracked.json").read_text(encoding="utf-8")))

invalid = [
    ("crm-change.schema.json", changed(change, ["kind"], "record_exploded"), "an unknown kind"),
    ("crm-change.schema.json", changed(change, ["record", "owner"], delete=True), "a record without owner"),
    ("crm-change.schema.json", changed(change, ["record", "version"], "1"), "a version as a string"),
    ("crm-change.schema.json", changed(change, ["colour"], "red"), "an unknown field"),
    ("crm-change.schema.json", changed(result, ["version"], delete=True), "a done result without version"),
    ("crm-change.schema.json", changed(result, ["reason"], "no"), "a done result with a reason"),
    ("crm-change.schema.json", changed(failed, ["retryable"], "yes"), "retryable as a string"),
    ("crm-change.schema.json", changed(result, ["key"], "mbx-jayne/42"), "a key without an intent id"),
    ("crm-command.schema.json", changed(command, ["command"], "launch_rocket"), "an unknown command"),
    ("crm-command.schema.json", changed(command, ["key"], delete=True), "a command without key"),
    ("crm-command.schema.json", changed(command, ["attempts"], "0"), "attempts as a string"),
    ("crm-command.schema.json", changed(command, ["fields"], None), "a track_appointment without fields"),
    ("crm-command.schema.json", changed(email, ["fields", "message_id"], delete=True), "a track_email without its Message-ID"),
    ("crm-command.schema.json", changed(email, ["fields", "correlation"], "telepathy"), "a track_email with an unknown correlation"),
    ("crm-command.schema.json", changed(email, ["record"], "from-INBOX/1/42"), "a track_email proposing a row not derived from its Message-ID"),
    ("mail-observation.schema.json", changed(seen, ["event", "type"], "item_vanished"), "an unknown event type"),
    ("mail-observation.schema.json", changed(seen, ["correlation"], delete=True), "no correlation"),
    ("mail-observation.schema.json", changed(seen, ["causation"], "01934f6a-8c00-7000-8000-000000000026"), "causation not a list"),
    ("mail-observation.schema.json", changed(seen, ["causation", 0], "not-a-uuid"), "causation[0] not a UUID"),
    ("mail-observation.schema.json", changed(seen, ["event", "data", "item", "etag"], 7), "an etag as a number"),
    ("mail-observation.schema.json", changed(seen, ["extra"], 1), "an unknown field"),
    ("sync-event.schema.json", changed(event, ["event_type"], "item_exploded"), "an unknown event type"),
    ("sync-event.schema.json", changed(event, ["position"], delete=True), "no position"),
    ("sync-event.schema.json", changed(event, ["position"], "42"), "a position as a string"),
    ("sync-event.schema.json", changed(event, ["stream"], "elsewhere"), "a stream neither mailbox/ nor org/"),
    ("sync-event.schema.json", sync_event(changed(seen["event"], ["data", "item", "content_hash"], -1)), "a mail observation's data not following its schema"),
    ("dead-letter-headers.schema.json", {"ledgersync-dead-letter-queue": "ledgersync.crm", "ledgersync-dead-lettered-at": 1}, "no reason"),
    ("dead-letter-headers.schema.json", {"ledgersync-dead-letter-reason": "bad", "ledgersync-dead-letter-queue": "ledgersync.crm", "ledgersync-dead-lettered-at": "yesterday"}, "a time as text"),
]
for schema_file, sample, what in invalid:
    expect_invalid(schema_file, sample, f"invalid sample ({schema_file}: {what})")
expect_valid(
    "dead-letter-headers.schema.json",
    {
        "ledgersync-schema": "mail-observation",
        "ledgersync-schema-version": 1,
        "ledgersync-dead-letter-reason": "message … does not follow its schema at `event.data.items`",
        "ledgersync-dead-letter-field": "event.data.items",
        "ledgersync-dead-letter-line": 1,
        "ledgersync-dead-letter-column": 98,
        "ledgersync-dead-letter-queue": "ledgersync.partition.7",
        "ledgersync-dead-lettered-at": 1795183500000,
    },
    "a dead letter's headers (docs/bus.md)",
)

# --- the AsyncAPI document: its schema files, header values and examples --------------------
# (the AsyncAPI CLI checks the document and the schemas' shape, not the examples against them)

asyncapi_text = (ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
asyncapi = yaml.safe_load(asyncapi_text)
for wire, file in WIRE_SCHEMAS.items():
    if f"./schemas/{file}" not in asyncapi_text:
        fault(f"docs/asyncapi.yaml does not reference docs/schemas/{file} (schema {wire})")
if "./schemas/dead-letter-headers.schema.json" not in asyncapi_text:
    fault("docs/asyncapi.yaml does not reference docs/schemas/dead-letter-headers.schema.json")

# The document as a resource beside the schemas: its relative $refs (./schemas/…) resolve to
# the schemas' $ids, its local ones (#/components/…) within it.
ASYNCAPI_URI = "https://example.invalid/ledgersync/asyncapi.yaml"
doc_registry = registry.with_resource(
    ASYNCAPI_URI, Resource.from_contents(asyncapi, default_specification=DRAFT202012)
)


def schema_of(node):
    """A message's payload or headers as a JSON Schema (unwrapping a multi-format schema)."""
    if isinstance(node, dict) and "schemaFormat" in node:
        return node["schema"]
    return node


messages = asyncapi["components"]["messages"]
wire_names = {m.get("name") for m in messages.values()}
for wire in WIRE_SCHEMAS:
    if wire not in wire_names:
        fault(f"docs/asyncapi.yaml has no message named {wire}")
for key, message in messages.items():
    where = f"docs/asyncapi.yaml: components.messages.{key}"
    headers = message.get("headers")
    if headers is None:
        fault(f"{where}: no headers schema")
        continue
    header_schema = {"$ref": ASYNCAPI_URI + f"#/components/messages/{key}/headers"}
    if "schemaFormat" in headers:
        header_schema = {"$ref": ASYNCAPI_URI + f"#/components/messages/{key}/headers/schema"}
    payload_schema = {"$ref": ASYNCAPI_URI + f"#/components/messages/{key}/payload"}
    if "schemaFormat" in message.get("payload", {}):
        payload_schema = {"$ref": ASYNCAPI_URI + f"#/components/messages/{key}/payload/schema"}
    # the header ledgersync-schema names the message's schema (dead letters keep the original's)
    if message.get("name") in WIRE_SCHEMAS:
        resolver = doc_registry.resolver(base_uri=ASYNCAPI_URI)
        resolved = resolver.lookup(header_schema["$ref"]).contents
        while "$ref" in resolved:
            resolved = resolver.lookup(resolved["$ref"]).contents
        if resolved.get("properties", {}).get("ledgersync-schema", {}).get("const") != message["name"]:
            fault(f"{where}: header ledgersync-schema is not const {message['name']}")
    if not message.get("examples"):
        fault(f"{where}: no example")
    for n, example in enumerate(message.get("examples", [])):
        for part, schema in (("headers", header_schema), ("payload", payload_schema)):
            v = Draft202012Validator(
                {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": schema["$ref"]},
                registry=doc_registry,
                format_checker=FormatChecker(),
            )
            checked += 1
            best = best_match(v.iter_errors(example.get(part)))
            if best is not None:
                best = explain(best)
                path = "/".join(str(p) for p in best.absolute_path) or "(top)"
                fault(f"{where}.examples[{n}].{part}: does not follow its schema at {path}: {best.message[:300]}")

if faults:
    print("\n".join(faults), file=sys.stderr)
    print(f"{len(faults)} fault(s) in the formats (docs/schemas, docs/formats.md)", file=sys.stderr)
    sys.exit(1)
print(f"schemas: {len(schemas)} valid; {checked} samples checked (valid ones taken, invalid ones refused)")
