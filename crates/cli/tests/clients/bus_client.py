"""A client of ledgersync's AMQP interface, written from docs/bus.md, docs/crm-changes.md,
docs/crm-commands.md and docs/event-stream.md alone (pika; nothing from the Rust code).

Usage:
  bus_client.py publish URL FILE [MESSAGE_ID]
      Publishes each non-blank line of FILE to the CRM queue `ledgersync.crm` as a
      `crm-change` message (one `crm apply` line a message), with publisher confirms. With
      MESSAGE_ID every line is sent under that id (a redelivery). Prints the message ids as a
      JSON list.
  bus_client.py raw URL SPEC
      Publishes the messages SPEC (a JSON file: a list of {"queue", "body" | "repeat" +
      "times", "message_id", "content_type", "headers"}) as they are, with confirms.
  bus_client.py dead URL COUNT
      Takes COUNT messages off `ledgersync.dead-letters` (waiting up to 60 s) and prints them
      as a JSON list of {"message_id", "headers", "size"}.
  bus_client.py adapter URL COUNT
      A CRM adapter: takes COUNT commands off `ledgersync.crm.commands`, checks each against
      the documented format, answers each with a `command_result` line on `ledgersync.crm`
      (done; a track_* command's row gets the CRM's own id `crm-<first 8 of the intent>`, and
      a track_email for a Message-ID already created is answered with that row),
      acks it, and prints what it did as a JSON list.
  bus_client.py events URL PATTERN
      Binds a queue of its own to `ledgersync.events` with PATTERN, prints READY, then reads a
      path from standard input: a JSON list of the event ids expected. Reads until it has seen
      each (de-duplicating by message id), checks the headers and positions, and prints
      `OK <n> <duplicates>`.
Exits 1 with the reason on any mismatch.
"""
import json
import sys
import uuid

import pika

COMMAND_FIELDS = {
    "key", "command", "rule", "mailbox", "intent", "entity", "record", "version", "remote",
    "title", "fields", "attempts", "last_error", "retry_at", "due",
}


def fail(text):
    print(text, flush=True)
    sys.exit(1)


def connect(url):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def crm_properties(message_id):
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        message_id=message_id,
        headers={"ledgersync-schema": "crm-change", "ledgersync-schema-version": 1},
    )


def publish(url, path, fixed_id=None):
    connection, channel = connect(url)
    ids = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            message_id = fixed_id or str(uuid.uuid4())
            channel.basic_publish(
                exchange="", routing_key="ledgersync.crm", body=line.encode(),
                properties=crm_properties(message_id), mandatory=True,
            )
            ids.append(message_id)
    connection.close()
    print(json.dumps(ids), flush=True)


def raw(url, path):
    connection, channel = connect(url)
    with open(path) as f:
        spec = json.load(f)
    for m in spec:
        body = m["body"].encode() if "body" in m else (m["repeat"] * m["times"]).encode()
        channel.basic_publish(
            exchange="", routing_key=m["queue"], body=body, mandatory=True,
            properties=pika.BasicProperties(
                content_type=m.get("content_type", "application/json"),
                delivery_mode=2,
                message_id=m.get("message_id"),
                headers=m.get("headers"),
            ),
        )
    connection.close()
    print("OK", flush=True)


def dead(url, count):
    connection, channel = connect(url)
    out = []
    for method, props, body in channel.consume(
        "ledgersync.dead-letters", inactivity_timeout=60
    ):
        if method is None:
            fail(f"only {len(out)} of {count} dead letters within 60 s: {json.dumps(out)}")
        headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (props.headers or {}).items()}
        out.append({"message_id": props.message_id, "headers": headers, "size": len(body)})
        channel.basic_ack(method.delivery_tag)
        if len(out) == count:
            break
    connection.close()
    print(json.dumps(out), flush=True)


def adapter(url, count):
    connection, channel = connect(url)
    done = []
    # One email activity per Message-ID (docs/crm-commands.md): a later track_email of the same
    # message is answered with the first one's row.
    emails = {}
    for method, props, body in channel.consume("ledgersync.crm.commands", inactivity_timeout=60):
        if method is None:
            fail(f"only {len(done)} of {count} commands within 60 s")
        command = json.loads(body)
        headers = props.headers or {}
        if headers.get("ledgersync-schema") != "crm-command" or headers.get("ledgersync-schema-version") != 1:
            fail(f"schema headers {headers!r}")
        if props.content_type != "application/json":
            fail(f"content type {props.content_type!r}")
        if set(command) != COMMAND_FIELDS:
            fail(f"fields {sorted(command)} are not the documented ones")
        mailbox, intent = command["key"].split("/", 1)
        if (mailbox, intent) != (command["mailbox"], command["intent"]) or props.message_id != intent:
            fail(f"key {command['key']} / message id {props.message_id} / intent {intent}")
        if command["command"] == "track_email":
            record, version = emails.setdefault(command["fields"]["message_id"], (f"crm-{intent[:8]}", 1))
        elif command["command"].startswith("track_"):
            record, version = f"crm-{intent[:8]}", 1
        else:
            record, version = command["record"], (command["version"] or 0) + 1
        result = {"kind": "command_result", "key": command["key"], "status": "done",
                  "record": record, "version": version}
        channel.basic_publish(
            exchange="", routing_key="ledgersync.crm", body=json.dumps(result).encode(),
            properties=crm_properties(str(uuid.uuid4())), mandatory=True,
        )
        channel.basic_ack(method.delivery_tag)
        done.append({"command": command["command"], "key": command["key"], "record": record,
                     "version": version, "title": command["title"], "fields": command["fields"]})
        if len(done) == count:
            break
    connection.close()
    print(json.dumps(done), flush=True)


def events(url, pattern):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange="ledgersync.events", exchange_type="topic", durable=True)
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange="ledgersync.events", routing_key=pattern)
    print("READY", flush=True)
    with open(sys.stdin.readline().strip()) as f:
        expected = json.load(f)
    wanted = set(expected)
    seen, duplicates, last = {}, 0, {}
    for method, props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=60):
        if method is None:
            missing = sorted(wanted - set(seen))
            fail(f"no message for 60 s; {len(missing)} of {len(wanted)} missing, e.g. {missing[:3]}")
        event = json.loads(body)
        headers = props.headers or {}
        if headers.get("ledgersync-schema") != "sync-event" or headers.get("ledgersync-schema-version") != 1:
            fail(f"schema headers {headers!r}")
        if props.message_id != event["event_id"] or headers.get("ledgersync-position") != event["position"]:
            fail(f"message id / position header disagree with the body: {props.message_id} {headers}")
        if props.message_id in seen:
            duplicates += 1
            continue
        # Journal order per stream: positions ascend within a stream.
        if event["position"] <= last.get(event["stream"], 0):
            fail(f"{event['stream']}: position {event['position']} after {last[event['stream']]}")
        last[event["stream"]] = event["position"]
        seen[props.message_id] = event
        if wanted <= set(seen):
            break
    connection.close()
    print(f"OK {len(wanted)} {duplicates}", flush=True)


mode = sys.argv[1]
if mode == "publish":
    publish(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
elif mode == "raw":
    raw(sys.argv[2], sys.argv[3])
elif mode == "dead":
    dead(sys.argv[2], int(sys.argv[3]))
elif mode == "adapter":
    adapter(sys.argv[2], int(sys.argv[3]))
elif mode == "events":
    events(sys.argv[2], sys.argv[3])
else:
    fail(f"unknown mode {mode}")
