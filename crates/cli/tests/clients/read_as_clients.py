#!/usr/bin/env python3
"""Reads what ledgersync wrote the way users' software reads it, and prints what it saw as JSON.

Used by the serve tests (crates/cli/tests/serve.rs): the files and messages are parsed by
Python's `icalendar` (calendars), `vobject` (vCards) and `email` (iMIP messages, RFC 6047), none
of which ledgersync wrote.

  read_as_clients.py files PATH...      every .ics (icalendar) and .vcf (vobject) file, parsed
  read_as_clients.py attendee MSG...    an attendee's mail client applying the iMIP messages in
                                        the order given (RFC 5546 §2.1.5: a message whose
                                        SEQUENCE is below the one the client holds for the UID
                                        is out of date and ignored; a CANCEL at or above it
                                        removes the meeting)

A file or message that does not parse makes the script exit 1 with the parser's error.
"""

import email
import email.policy
import json
import sys

import icalendar
import vobject


def text(value):
    return None if value is None else str(value)


def address(value):
    return None if value is None else str(value).lower().removeprefix("mailto:")


def event_summary(component):
    attendees = component.get("ATTENDEE") or []
    if not isinstance(attendees, list):
        attendees = [attendees]
    start = component.get("DTSTART")
    return {
        "uid": text(component.get("UID")),
        "summary": text(component.get("SUMMARY")),
        "location": text(component.get("LOCATION")),
        "start": start.dt.isoformat() if start is not None else None,
        "organizer": address(component.get("ORGANIZER")),
        "attendees": sorted(address(a) for a in attendees),
        "sequence": int(component.get("SEQUENCE", 0)),
        "status": text(component.get("STATUS")),
        "recurrence_id": text(component.get("RECURRENCE-ID")),
    }


def read_calendar(data):
    cal = icalendar.Calendar.from_ical(data)
    return {
        "method": text(cal.get("METHOD")),
        "events": [event_summary(c) for c in cal.walk("VEVENT")],
        "todos": [event_summary(c) for c in cal.walk("VTODO")],
    }


def read_files(paths):
    out = {}
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".vcf"):
            card = vobject.readOne(data.decode("utf-8"))
            n = card.n.value
            out[path] = {
                "fn": card.fn.value,
                "family": n.family,
                "given": n.given,
                "emails": [e.value for e in getattr(card, "email_list", [])],
                "tels": [t.value for t in getattr(card, "tel_list", [])],
            }
        else:
            out[path] = read_calendar(data)
    return out


def calendar_part(path):
    with open(path, "rb") as f:
        message = email.message_from_binary_file(f, policy=email.policy.default)
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            return message["Subject"], part.get_content()
    raise SystemExit(f"{path}: no text/calendar part")


def attendee(paths):
    held = {}  # uid -> (sequence, event)
    log = []
    for path in paths:
        subject, body = calendar_part(path)
        cal = read_calendar(body)
        for ev in cal["events"]:
            uid, seq = ev["uid"], ev["sequence"]
            known = held.get(uid)
            if known is not None and seq < known[0]:
                log.append(f"{cal['method']} {seq}: out of date, ignored")
            elif cal["method"] == "CANCEL":
                held.pop(uid, None)
                log.append(f"CANCEL {seq}: removed")
            else:
                held[uid] = (seq, ev)
                log.append(f"{cal['method']} {seq}: kept")
    return {
        "log": log,
        "calendar": {uid: ev for uid, (_, ev) in held.items()},
    }


def main():
    mode, paths = sys.argv[1], sys.argv[2:]
    if mode == "files":
        result = read_files(paths)
    elif mode == "attendee":
        result = attendee(paths)
    else:
        raise SystemExit(f"unknown mode {mode!r}: use files or attendee")
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
