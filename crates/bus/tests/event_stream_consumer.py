"""A consumer of ledgersync's public event stream, written from docs/event-stream.md alone.

Usage: event_stream_consumer.py AMQP_URL BINDING_PATTERN EXPECTED_JSON

Declares a queue of its own, binds it to the topic exchange `ledgersync.events` with the
pattern, prints READY, then reads messages until it has seen every event listed in
EXPECTED_JSON (a list of {"position", "event_id", "event_type"}), de-duplicating by message id,
and checks each one: message id = body's event_id, content type application/json, the
schema headers, the routing key, and positions ascending (order per mailbox).
Prints `OK <n>` and exits 0, or prints what is wrong and exits 1.
"""
import json
import sys

import pika

url, pattern, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
with open(expected_path) as f:
    expected = json.load(f)

connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.exchange_declare(exchange="ledgersync.events", exchange_type="topic", durable=True)
queue = channel.queue_declare(queue="", exclusive=True).method.queue
channel.queue_bind(queue=queue, exchange="ledgersync.events", routing_key=pattern)
print("READY", flush=True)

seen = {}
order = []


def fail(text):
    print(text, flush=True)
    sys.exit(1)


for method, props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=30):
    if method is None:
        fail(f"no message for 30 s after {len(order)} of {len(expected)}")
    event = json.loads(body)
    if props.content_type != "application/json":
        fail(f"content type {props.content_type!r}")
    headers = props.headers or {}
    if headers.get("ledgersync-schema") != "sync-event" or headers.get("ledgersync-schema-version") != 1:
        fail(f"schema headers {headers!r}")
    if headers.get("ledgersync-position") != event["position"]:
        fail(f"position header {headers.get('ledgersync-position')} != {event['position']}")
    if props.message_id != event["event_id"]:
        fail(f"message id {props.message_id} != event_id {event['event_id']}")
    org, mailbox, event_type = method.routing_key.split(".")
    if event["stream"] != f"mailbox/{mailbox}" or event_type != event["event_type"]:
        fail(f"routing key {method.routing_key} for {event['stream']} {event['event_type']}")
    if props.message_id in seen:
        continue  # at least once: a duplicate
    seen[props.message_id] = event
    order.append(event["position"])
    if len(order) == len(expected):
        break

if order != sorted(order):
    fail(f"positions out of order: {order}")
got = [
    {"position": seen_event["position"], "event_id": seen_event["event_id"], "event_type": seen_event["event_type"]}
    for seen_event in sorted(seen.values(), key=lambda e: e["position"])
]
if got != expected:
    fail(f"events differ: got {got} expected {expected}")
connection.close()
print(f"OK {len(order)}", flush=True)
